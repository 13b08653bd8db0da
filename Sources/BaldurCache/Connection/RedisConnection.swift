import CHiredis
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One synchronous connection to one Redis server: the only code in
/// BaldurCache that touches a hiredis context.
///
/// Internal: callers reach a connection only as lent to them, through the
/// pools (``RedisClient``'s calls, ``RedisBlockingConnection`` inside
/// `withConnection`, the engine's loop driving it through
/// ``EventLoopConnection``), never the context itself.
///
/// A connection is used by one caller at a time; the pools hand connections
/// out so that this holds. Once any call fails with
/// an error whose ``RedisError/isConnectionFatal`` is `true` (I/O error,
/// EOF, protocol error, read or write timeout) the connection is broken for
/// good: hiredis may have half a reply buffered, so it is reset (unsent bytes
/// dropped, see `close(resetting:)`), every later call throws
/// ``RedisError/Code/closed`` and the pool discards it.
final class RedisConnection: @unchecked Sendable {
    // Why @unchecked Sendable is safe: a connection has exactly one user at a
    // time. RedisClient's pool hands it out under its mutex and takes it back
    // the same way, so the context is never touched by two threads at once;
    // the mutex hand-off orders every access; the engine's loop and a
    // withConnection body hold it the same way.
    // The connection has one user at a time (see above), so the runtime's
    // dynamic exclusivity checks on these hot fields only cost time.
    @exclusivity(unchecked) private var context: UnsafeMutablePointer<redisContext>?
    /// Reused for every command: the request in RESP, as sent. Empty between calls.
    @exclusivity(unchecked) private var requestBytes = OutputBuffer()
    /// A request buffer that grew past this (a large `MSET`) is released after
    /// use rather than kept for the life of a pooled connection.
    private static let retainedRequestCapacity = 64 * 1024
    /// Builds each reply as hiredis parses it (see ``ReplyBuilder``).
    private let replies = ReplyBuilder()
    /// The reader callbacks that feed ``replies``; freed after the context.
    private let replyCallbacks = ReplyBuilder.makeCallbacks()
    /// The socket, or TLS over it (`rediss://`): every request is written
    /// and every reply read through it, here and on the event loop; hiredis
    /// connects the socket and parses the replies, and does no I/O of its own.
    private var transport = Transport(descriptor: -1)
    /// Bytes read and not yet fed to hiredis' reader: fed ``feedSlice`` at
    /// a time, as the replies are asked for (see ``feedReplies(_:_:)``).
    private let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 * 1024, alignment: 8)
    @exclusivity(unchecked) private var unfed = 0..<0
    /// Busy-polls for replies before blocking (see ``ReplySpin``).
    @exclusivity(unchecked) private(set) var spin: ReplySpin

    /// The connection's life: its setup here, then (in event-loop mode) the
    /// ``EventLoopConnection`` that takes it over; a blocking connection
    /// records only its close (it is open while it has a context).
    @exclusivity(unchecked) private(set) var machine: ConnectionStateMachine

    /// What the commands sent so far changed about the session (see ``SessionState``).
    @exclusivity(unchecked) private(set) var session: SessionState
    /// The server refused this connection (`maxclients`) in place of a reply.
    private(set) var refusedByServer = false
    /// A reply has arrived on this connection; until then a closed stream
    /// may mean a TLS server reached without TLS.
    private var answered = false
    /// Lets a pool end this connection's connect or call in flight from
    /// another thread (a failover demoted the server).
    let abortHandle: ConnectionAbort
    /// The timeouts, for error messages.
    private let commandTimeout: Duration?
    /// A blocking command's allowance beyond its own timeout (see ``BlockingCommand``).
    private let blockingMargin: Duration?
    private let connectTimeout: Duration

    /// The server this connection talks to.
    let address: RedisServerAddress
    /// When the connection was last used successfully (monotonic clock).
    @exclusivity(unchecked) var lastUsed: ContinuousClock.Instant

    private static let ignoreSIGPIPE: Void = {
        // hiredis writes with write(2); a peer that closed the socket would
        // otherwise raise SIGPIPE and kill the host process.
        _ = signal(SIGPIPE, SIG_IGN)
    }()

    /// Connects to `address`, runs the TLS handshake when the configuration
    /// has ``RedisConfiguration/tls``, applies the socket timeout, then sends
    /// `AUTH` and `SELECT` as the configuration asks.
    ///
    /// - Parameters:
    ///   - address: A TCP or unix-socket address.
    ///   - configuration: Timeouts, credentials and database.
    /// - Throws: ``RedisError`` with code `connectionRefused`, `connectTimeout`,
    ///   `io`, `tls` (the handshake or certificate check failed), or `server`
    ///   (for example `WRONGPASS` or a bad database index).
    convenience init(address: RedisServerAddress, configuration: RedisConfiguration) throws(RedisError) {
        try self.init(address: address, configuration: configuration, abortHandle: ConnectionAbort())
    }

    /// ``init(address:configuration:)``, abortable through `abortHandle`
    /// from the moment the socket is connected.
    init(address: RedisServerAddress, configuration: RedisConfiguration, abortHandle: ConnectionAbort) throws(RedisError) {
        _ = Self.ignoreSIGPIPE
        self.abortHandle = abortHandle
        self.address = address
        self.lastUsed = .now
        self.spin = ReplySpin(budget: configuration.pool.spinWait)
        self.session = SessionState(configuredDatabase: configuration.database)
        self.commandTimeout = configuration.commandTimeout
        self.blockingMargin = configuration.blockingCommandTimeout ?? configuration.commandTimeout
        self.connectTimeout = configuration.connectTimeout
        self.machine = ConnectionStateMachine(connecting: .init(configuration))
        try configuration.validate()
        try address.validate()
        let connectTimeout = timeval(configuration.connectTimeout)
        let raw: UnsafeMutablePointer<redisContext>?
        switch address {
        case .tcp(let host, let port):
            raw = redisConnectWithTimeout(host, Int32(port), connectTimeout)
        case .unix(let path):
            raw = redisConnectUnixWithTimeout(path, connectTimeout)
        }
        guard let raw else {
            throw RedisError(.io, "could not allocate a hiredis context for \(address)")
        }
        // The context is owned from here on, also when it reports an error:
        // deinit frees it on every path.
        context = raw
        if raw.pointee.err != 0 {
            let error = machine.setupFailed(classify(raw, savedErrno: errno, during: .connecting), at: address)
            close(resetting: true)
            throw error
        }
        if let reason = abortHandle.attach(raw.pointee.fd) {
            let error = machine.setupFailed(ConnectionAbort.connectError(to: address, reason), at: address)
            close(resetting: true)
            throw error
        }
        transport = Transport(descriptor: raw.pointee.fd)
        raw.pointee.reader.pointee.fn = replyCallbacks
        raw.pointee.reader.pointee.privdata = Unmanaged.passUnretained(replies).toOpaque()
        do throws(RedisError) {
            if let timeout = configuration.commandTimeout {
                guard redisSetTimeout(raw, timeval(timeout)) == REDIS_OK else { throw contextError() }
            }
            var action = machine.connected()
            while true {
                switch action {
                case .handshakeTLS:
                    guard let settings = configuration.tls, case .tcp(let host, _) = address else {
                        throw RedisError(.invalidConfiguration, "TLS needs a TCP address, not \(address)")
                    }
                    let transport = try TLSTransport(
                        descriptor: raw.pointee.fd, host: host, configuration: settings,
                        timeout: configuration.connectTimeout, address: address
                    )
                    self.transport = Transport(descriptor: raw.pointee.fd, tls: transport)
                    action = machine.tlsEstablished(clientCertificateDemanded: transport.serverAskedForMissingCertificate)
                case .authenticate:
                    let credentials = configuration.username.map { [RedisArgument($0)] } ?? []
                    action = machine.setupReplyReceived(try sendAllowingErrorReply(["AUTH"] + credentials + [RedisArgument(configuration.password ?? "")]))
                case .select(let database):
                    action = machine.setupReplyReceived(try sendAllowingErrorReply(["SELECT", RedisArgument(database)]))
                case .verify:
                    action = machine.setupReplyReceived(try sendAllowingErrorReply(["PING"]))
                case .ready:
                    // The connection's own AUTH and SELECT made the session the configured one.
                    session = SessionState(configuredDatabase: configuration.database)
                    return
                case .fail(let error):
                    throw error
                }
            }
        } catch {
            let reported = machine.setupFailed(error, at: address)
            close(resetting: true)
            if let reason = abortHandle.reason { throw ConnectionAbort.connectError(to: address, reason) }
            throw reported
        }
    }

    deinit {
        // The reader may call back into `replies` (a partial reply) while it is freed.
        if let context { redisFree(context) }
        replyCallbacks.deallocate()
        readBuffer.deallocate()
    }

    /// `false` once the connection was closed or broken by a fatal error.
    var isOpen: Bool { context != nil }

    /// `true` when the socket has input although no reply is awaited: the
    /// server closed it (EOF, reset) or sent something unasked. Such a
    /// connection must not carry another command. One `poll(2)` with a zero
    /// timeout, as redis-py's pool checks `can_read()` before reuse.
    var hasUnexpectedInput: Bool {
        guard let context else { return true }
        if !unfed.isEmpty || transport.hasBufferedInput { return true }
        var descriptor = pollfd(fd: context.pointee.fd, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, 0) != 0 else { return false }
        // Under TLS the server may send records that carry no reply.
        guard let tls = transport.tls else { return true }
        return tls.hasInputBeyondHousekeeping()
    }

    /// `true` when the connection can serve another caller as it is: open,
    /// its session as configured (no open `MULTI`, `WATCH`, other database,
    /// subscription, `MONITOR`, `CLIENT REPLY`), and no reply data left in
    /// hiredis' reader (a second `SUBSCRIBE` confirmation, say). The pool
    /// also checks the socket for unexpected input before reuse.
    var isReusable: Bool {
        guard let context, session.isClean else { return false }
        let reader = context.pointee.reader.pointee
        return reader.len == reader.pos && reader.ridx < 0 && unfed.isEmpty && !transport.hasBufferedInput
    }

    /// Closes the socket gracefully. Idempotent; later calls throw ``RedisError/Code/closed``.
    func close() {
        close(resetting: false)
    }

    /// Closes the socket; with `resetting`, abortively: `SO_LINGER {1, 0}`
    /// makes `close(2)` send a reset and drop whatever the kernel still holds
    /// unsent, so a request that timed out cannot reach the server later and
    /// overwrite newer writes.
    func close(resetting: Bool) {
        guard let context else { return }
        if resetting, context.pointee.fd >= 0 {
            var reset = linger(l_onoff: 1, l_linger: 0)
            _ = setsockopt(context.pointee.fd, SOL_SOCKET, SO_LINGER, &reset, socklen_t(MemoryLayout<linger>.size))
        }
        abortHandle.detach()
        transport = Transport(descriptor: -1)
        unfed = 0..<0
        redisFree(context)
        self.context = nil
        // During the setup the failure that closed the socket is reported
        // to the machine by init's catch, with its own error.
        if machine.isOpen { _ = machine.closeRequested(graceful: false) }
    }

    /// Sends one command and waits for its reply: the command is written in
    /// RESP by `RESPEncoding` (the bytes `redisCommandArgv` would format)
    /// straight to the ``Transport``, and its reply parsed by hiredis' reader
    /// from what is read back.
    ///
    /// - Parameter arguments: The command and its arguments, binary-safe.
    /// - Returns: The reply. A top-level error reply is thrown, not returned.
    /// - Throws: ``RedisError``: `server` for an error reply (the connection
    ///   stays usable); a connection-fatal code otherwise (the connection is
    ///   closed).
    @discardableResult
    func send(_ arguments: [RedisArgument]) throws(RedisError) -> RedisReply {
        try sendAllowingErrorReply(arguments).throwingServerError()
    }

    /// Like ``send(_:)`` but returns an error reply as `.error` instead of throwing it.
    ///
    /// - Parameter pooled: `true` for the pool's request/reply callers, which
    ///   must not start a subscription or `MONITOR` (the next caller would
    ///   get its messages as replies).
    func sendAllowingErrorReply(_ arguments: [RedisArgument], pooled: Bool = false) throws(RedisError) -> RedisReply {
        let context = try liveContext()
        guard !arguments.isEmpty else { throw RedisError(.invalidArgument, "a command needs at least one argument") }
        let name = RESPEncoding.append(arguments, to: &requestBytes)
        do { try admit(arguments, name: name, pooled: pooled) } catch {
            requestBytes.removeAll(keepingCapacityUpTo: Self.retainedRequestCapacity)
            throw error
        }
        try writeRequest()
        guard RedisClient.isBlocking(arguments) else {
            return try awaitReplies(context) { () throws(RedisError) in try readReply(from: context) }
        }
        // A blocking command waits its own timeout on the server: the socket
        // allows its reply that plus blockingCommandTimeout, then goes back
        // to commandTimeout (or, failing that, the connection is closed).
        let replyTimeout = BlockingCommand.replyTimeout(for: arguments, base: commandTimeout, margin: blockingMargin)
        guard replyTimeout != commandTimeout else {
            return try awaitReplies(context) { () throws(RedisError) in try readReply(from: context) }
        }
        guard redisSetTimeout(context, replyTimeout.map(timeval.init) ?? timeval()) == REDIS_OK else { throw contextError() }
        defer {
            // The context itself: a failed read has closed and freed it.
            if let open = self.context, redisSetTimeout(open, commandTimeout.map(timeval.init) ?? timeval()) != REDIS_OK { close(resetting: true) }
        }
        return try awaitReplies(context) { () throws(RedisError) in try readReply(from: context) }
    }

    /// Waits for the next message the server sends without a request: after
    /// `SUBSCRIBE` (each further confirmation, then every published
    /// message) or `MONITOR`, on a connection of your own.
    ///
    /// ```swift
    /// let listener = try RedisConnection(address: address, configuration: configuration)
    /// try listener.send(["SUBSCRIBE", "news", "alerts"])   // confirms "news"
    /// let second = try listener.receive()                 // confirms "alerts"
    /// let message = try listener.receive()                // ["message", "news", payload]
    /// ```
    ///
    /// - Throws: ``RedisError/Code/readTimeout`` when nothing arrives within
    ///   `commandTimeout` (the connection is then closed: use `nil` for a
    ///   listener that waits indefinitely), or another connection-fatal code.
    func receive() throws(RedisError) -> RedisReply {
        let context = try liveContext()
        return try readReply(from: context)
    }

    /// Accounts for `arguments`, whose name the encoder wrote at `name` in
    /// ``requestBytes``, in ``session``; refuses what a request/reply call
    /// cannot carry: `CLIENT REPLY OFF|SKIP` (the reply would never come),
    /// and on pooled calls the subscription commands and `MONITOR`.
    @inline(__always)
    private func admit(_ arguments: [RedisArgument], name: Range<Int>, pooled: Bool) throws(RedisError) {
        guard SessionState.mayChangeSession(nameLength: name.count),
              let kind = requestBytes.withBytes({ SessionState.kind(ofName: UnsafeRawBufferPointer(rebasing: $0[name])) })
        else { return }
        switch kind {
        case .push where pooled:
            let name = String(decoding: arguments[0].bytes, as: UTF8.self).uppercased()
            throw RedisError(.invalidArgument, "\(name) turns a connection into a message stream and cannot go through the pool; open a RedisConnection of your own and read messages with receive()")
        case .session where SessionState.isClientReply(arguments) && arguments.count >= 3
            && ["OFF", "SKIP"].contains(String(decoding: arguments[2].bytes, as: UTF8.self).uppercased()):
            throw RedisError(.invalidArgument, "CLIENT REPLY OFF and SKIP make the server withhold replies that send() waits for; they cannot be used here")
        default:
            session.observe(kind, arguments)
        }
    }

    /// Sends every command before reading any reply (pipelining): the
    /// requests are written in chunks of about 4 KiB, each as soon as it is
    /// full, then the replies are read, in order.
    ///
    /// - Parameter commands: The commands, in order.
    /// - Returns: One reply per command, in order. Error replies are returned
    ///   as `.error` values, so one failing command does not hide the others.
    /// - Throws: ``RedisError`` with a connection-fatal code when the
    ///   connection fails; the connection is then closed.
    func pipeline(_ commands: [[RedisArgument]]) throws(RedisError) -> [RedisReply] {
        try pipeline(commands, pooled: false)
    }

    /// ``pipeline(_:)``, refusing subscription commands for pooled callers
    /// (see ``sendAllowingErrorReply(_:pooled:)``).
    func pipeline(_ commands: [[RedisArgument]], pooled: Bool) throws(RedisError) -> [RedisReply] {
        for command in commands where command.isEmpty {
            throw RedisError(.invalidArgument, "a command needs at least one argument")
        }
        return try pipeline(count: commands.count, pooled: pooled) { index in commands[index] }
    }

    /// Pipelines `count` commands that `command` builds on demand, in order.
    ///
    /// Requests are written in chunks of ``pipelineChunk`` bytes as they are
    /// built, so the server works through the first commands while the
    /// client still builds the rest (for `mset`, encoding JSON); it also
    /// keeps the request buffer small for long pipelines. Replies are read
    /// after the last chunk. When `command` throws, or builds an empty
    /// command, after a chunk went out, the connection is closed: the
    /// commands sent may have run, and their replies are not read. So is a
    /// command refused as ``sendAllowingErrorReply(_:pooled:)`` refuses it:
    /// nothing is sent when it comes before the first chunk.
    func pipeline(
        count: Int, pooled: Bool = false, _ command: (Int) throws(RedisError) -> [RedisArgument]
    ) throws(RedisError) -> [RedisReply] {
        try sendPipeline(count: count, pooled: pooled, command)
        guard count > 0 else { return [] }
        return try receivePipeline(count: count)
    }

    /// The first half of ``pipeline(count:pooled:_:)``: builds and writes
    /// the requests, reads nothing. The caller reads the `count` replies with
    /// ``receivePipeline(count:)`` before anything else uses the connection
    /// (a cluster call writes every node's part before it reads one).
    func sendPipeline(
        count: Int, pooled: Bool = false, _ command: (Int) throws(RedisError) -> [RedisArgument]
    ) throws(RedisError) {
        _ = try liveContext()
        guard count > 0 else { return }
        requestBytes.removeAll(keepingCapacityUpTo: Self.retainedRequestCapacity)
        let sessionBefore = session
        var sentChunk = false
        for index in 0..<count {
            do throws(RedisError) {
                let arguments = try command(index)
                guard !arguments.isEmpty else { throw RedisError(.invalidArgument, "a command needs at least one argument") }
                let name = RESPEncoding.append(arguments, to: &requestBytes)
                try admit(arguments, name: name, pooled: pooled)
            } catch {
                requestBytes.removeAll(keepingCapacityUpTo: Self.retainedRequestCapacity)
                if sentChunk { close(resetting: true) } else { session = sessionBefore }
                throw error
            }
            if requestBytes.count >= Self.pipelineChunk, index < count - 1 {
                try writeRequest()
                sentChunk = true
            }
        }
        try writeRequest()
    }

    /// The second half of ``pipeline(count:pooled:_:)``: the replies to the
    /// `count` commands ``sendPipeline(count:pooled:_:)`` wrote, in order.
    func receivePipeline(count: Int) throws(RedisError) -> [RedisReply] {
        let context = try liveContext()
        return try awaitReplies(context) { () throws(RedisError) in
            var replies: [RedisReply] = []
            replies.reserveCapacity(count)
            for _ in 0..<count {
                replies.append(try readReply(from: context))
            }
            return replies
        }
    }

    /// Pipelined requests are written whenever this much is queued.
    static let pipelineChunk = 4 * 1024

    // MARK: - Event-loop mode (the engine's side of the connection)

    /// Hands the socket to an event loop: makes it non-blocking and returns
    /// the transport the loop reads and writes through, and the open
    /// ``ConnectionStateMachine`` the event-loop connection drives from here on. From here on the
    /// engine writes requests itself and feeds what it reads to
    /// ``feedReplies(_:_:)``; hiredis' reader still parses every reply.
    /// The loop closes the connection (``close(resetting:)``) only after it
    /// stopped watching the socket, so a reused descriptor number is never
    /// taken for this one.
    func enterEventLoopMode() throws(RedisError) -> (transport: Transport, machine: ConnectionStateMachine) {
        let context = try liveContext()
        let descriptor = context.pointee.fd
        let flags = fcntl(descriptor, F_GETFL)
        guard flags >= 0, fcntl(descriptor, F_SETFL, flags | O_NONBLOCK) == 0 else {
            let error = RedisError(.io, "could not make the socket to \(address) non-blocking (errno \(errno))")
            close(resetting: true)
            throw error
        }
        context.pointee.flags &= ~Int32(REDIS_BLOCK)
        guard unfed.isEmpty else {
            let error = RedisError(.protocolError, "\(address) sent more than the replies to the connection's setup")
            close(resetting: true)
            throw error
        }
        return (transport, machine)
    }

    /// Feeds bytes read from the socket to hiredis' reader
    /// (`redisReaderFeed`) and hands each reply it completes to `deliver`,
    /// in order (`redisReaderGetReply`).
    ///
    /// The bytes go in ``feedSlice`` at a time, each slice drained before
    /// the next: hiredis moves the unread rest of its buffer to the front
    /// whenever a reply ends more than 1 KiB into it (`sdsrange`), so one
    /// large read of small pipelined replies fed at once is moved again
    /// after every dozen replies, a cost that grows with the square of the
    /// read (64 KiB of `GET` replies: about 300 instructions a reply in
    /// `memmove`). Fed a slice at a time, it moves at most one unfinished reply.
    ///
    /// - Throws: `protocolError` when the bytes are not RESP, or
    ///   `connectionRefused` for the `maxclients` refusal. The connection is
    ///   then unusable; the caller closes it.
    func feedReplies(_ bytes: UnsafeRawBufferPointer, _ deliver: (RedisReply) -> Void) throws(RedisError) {
        let reader = try liveContext().pointee.reader!
        var offset = 0
        while offset < bytes.count {
            let slice = min(Self.feedSlice, bytes.count - offset)
            if redisReaderFeed(reader, bytes.baseAddress!.advanced(by: offset).assumingMemoryBound(to: CChar.self), slice) != REDIS_OK {
                throw readerError(reader)
            }
            offset += slice
            try drainReplies(reader, deliver)
        }
    }

    /// How many bytes ``feedReplies(_:_:)`` hands hiredis at a time: its
    /// buffer is compacted once a reply ends past 1 KiB.
    static let feedSlice = 1024

    /// Hands `deliver` every reply the reader has complete.
    private func drainReplies(_ reader: UnsafeMutablePointer<redisReader>, _ deliver: (RedisReply) -> Void) throws(RedisError) {
        while true {
            var token: UnsafeMutableRawPointer?
            guard redisReaderGetReply(reader, &token) == REDIS_OK else { throw readerError(reader) }
            guard token != nil, let reply = replies.take() else { return }
            answered = true
            if case .error(let text) = reply, text.hasPrefix(Self.tooManyClients) {
                refusedByServer = true
                throw RedisError(.connectionRefused, "\(address) refused the connection: \(text)")
            }
            deliver(reply)
        }
    }

    /// What a read or write through a ``Transport`` that moved nothing
    /// means, in the words of ``classify(hiredisError:text:errno:during:address:commandTimeout:connectTimeout:)``.
    /// ``TransportProgress/wouldBlock`` is a timeout: the synchronous path's
    /// socket timeout passed.
    func transportError(_ progress: TransportProgress, during phase: Phase) -> RedisError {
        let savedErrno: Int32
        switch progress {
        case .endOfStream:
            return explainingEarlyClose(Self.classify(hiredisError: REDIS_ERR_EOF, text: "Server closed the connection", errno: 0, during: phase,
                                              address: address, commandTimeout: commandTimeout, connectTimeout: connectTimeout))
        case .tlsFailed(let text):
            return RedisError(.tls, "TLS error with \(address): \(text)")
        case .failed(let code): savedErrno = code
        case .wouldBlock, .moved: savedErrno = EAGAIN
        }
        return explainingEarlyClose(Self.classify(hiredisError: REDIS_ERR_IO, text: String(cString: strerror(savedErrno)), errno: savedErrno, during: phase,
                                          address: address, commandTimeout: commandTimeout, connectTimeout: connectTimeout))
    }

    private func readerError(_ reader: UnsafeMutablePointer<redisReader>) -> RedisError {
        let text = withUnsafeBytes(of: reader.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return Self.classify(
            hiredisError: reader.pointee.err, text: text, errno: 0, during: .reading,
            address: address, commandTimeout: commandTimeout, connectTimeout: connectTimeout
        )
    }

    // MARK: - Internals

    private func liveContext() throws(RedisError) -> UnsafeMutablePointer<redisContext> {
        guard let context else {
            throw RedisError(.closed, "the connection to \(address) is closed")
        }
        return context
    }

    /// Writes the request bytes in ``requestBytes`` through the
    /// ``transport`` and empties it. On the blocking socket a write that
    /// stalls for `commandTimeout` (`SO_SNDTIMEO`) is a `writeTimeout`.
    private func writeRequest() throws(RedisError) {
        let stopped = requestBytes.withBytes { transport.writeAll(UnsafeRawBufferPointer($0)) }
        requestBytes.removeAll(keepingCapacityUpTo: Self.retainedRequestCapacity)
        if let stopped { throw broken(transportError(stopped, during: .writing)) }
    }

    /// Lets ``ReplySpin`` poll briefly for the first reply (unless one is
    /// read already), then runs `read`, counted in ``ReplySpin/awaiting``
    /// throughout.
    private func awaitReplies<R>(
        _ context: UnsafeMutablePointer<redisContext>,
        _ read: () throws(RedisError) -> R
    ) throws(RedisError) -> R {
        let awaiting = ReplySpin.awaiting.wrappingAdd(1, ordering: .relaxed).newValue
        defer { ReplySpin.awaiting.wrappingSubtract(1, ordering: .relaxed) }
        if unfed.isEmpty && !transport.hasBufferedInput {
            spin.awaitReadable(context.pointee.fd, busyCallers: max(awaiting, ReplySpin.connectionsInUse.load(ordering: .relaxed)))
        }
        let replies = try read()
        lastUsed = .now
        return replies
    }

    /// Blocks for the next reply and takes it from ``replies``; a failed
    /// read closes the connection.
    private func readReply(from context: UnsafeMutablePointer<redisContext>) throws(RedisError) -> RedisReply {
        let reply = try nextReply(from: context.pointee.reader!)
        answered = true
        if case .error(let text) = reply, text.hasPrefix(Self.tooManyClients) {
            // Redis refuses a client over maxclients by sending this in place
            // of the first reply and closing: nothing we sent ran. A refused
            // connection, not a server answer (the pool backs off on it).
            refusedByServer = true
            close(resetting: true)
            throw RedisError(.connectionRefused, "\(address) refused the connection: \(text)")
        }
        return reply
    }

    /// The next reply hiredis' reader completes: from what it holds, else
    /// from the next ``feedSlice`` of ``readBuffer``, else from a read
    /// through the ``transport``, which blocks up to `commandTimeout`
    /// (`SO_RCVTIMEO`; then `readTimeout`).
    private func nextReply(from reader: UnsafeMutablePointer<redisReader>) throws(RedisError) -> RedisReply {
        while true {
            var token: UnsafeMutableRawPointer?
            guard redisReaderGetReply(reader, &token) == REDIS_OK else { throw broken(readerError(reader)) }
            if token != nil, let reply = replies.take() { return reply }
            if unfed.isEmpty {
                let progress = transport.read(into: readBuffer)
                guard case .moved(let count) = progress else { throw broken(transportError(progress, during: .reading)) }
                unfed = 0..<count
            }
            let slice = min(Self.feedSlice, unfed.count)
            guard redisReaderFeed(reader, readBuffer.baseAddress!.advanced(by: unfed.lowerBound).assumingMemoryBound(to: CChar.self), slice) == REDIS_OK else {
                throw broken(readerError(reader))
            }
            unfed = unfed.lowerBound + slice..<unfed.upperBound
        }
    }

    /// What Redis sends a client it will not serve because `maxclients` is reached.
    static let tooManyClients = "ERR max number of clients reached"

    /// What the connection was doing when hiredis reported an error.
    enum Phase { case connecting, writing, reading }

    /// Closes the connection abortively (see ``close(resetting:)``) and
    /// returns `error`, the reason, for the caller to throw.
    /// When the connection was aborted (see ``ConnectionAbort``), the error
    /// says why instead.
    private func broken(_ error: RedisError) -> RedisError {
        let aborted = abortHandle.reason
        close(resetting: true)
        guard let aborted else { return error }
        return ConnectionAbort.callError(at: address, aborted, detail: error.message)
    }

    /// `error`, explained when a plain connection was closed before its
    /// first reply: a new connection asks the server what it is
    /// (``greeting(of:within:)``). A server at `maxclients` refuses
    /// (`connectionRefused` with its words: its refusal on this connection
    /// was lost to the reset); one that answers a TLS hello serves TLS (a
    /// hint to use `rediss://`); one killed or restarting gets no hint.
    private func explainingEarlyClose(_ error: RedisError) -> RedisError {
        guard !answered, transport.tls == nil, error.code == .connectionClosed, case .tcp = address else { return error }
        switch Self.greeting(of: address, within: min(connectTimeout, .milliseconds(500))) {
        case .refusal(let text):
            refusedByServer = true
            return RedisError(.connectionRefused, "\(address) refused the connection: \(text)")
        case .tls:
            return RedisError(.connectionClosed, error.message + "; it closed before any reply and answers TLS: connect with rediss://")
        case .other:
            return error
        }
    }

    /// A TLS 1.2 ClientHello with no extensions: any TLS server answers it
    /// with a handshake record or an alert, both `0x16`/`0x15` then `0x03`.
    private static let clientHello: [UInt8] = {
        let suites: [UInt8] = [0xC0, 0x2F, 0xC0, 0x30, 0xC0, 0x2B, 0xC0, 0x2C, 0x00, 0x9C, 0x00, 0x9D, 0x13, 0x01, 0x13, 0x02]
        let body: [UInt8] = [0x03, 0x03] + [UInt8](repeating: 0, count: 32) + [0x00, 0x00, UInt8(suites.count)] + suites + [0x01, 0x00]
        let handshake: [UInt8] = [0x01, 0x00, 0x00, UInt8(body.count)] + body
        return [0x16, 0x03, 0x01, 0x00, UInt8(handshake.count)] + handshake
    }()

    /// What a server says first to a new connection that sends a TLS hello.
    enum Greeting: Equatable {
        /// A TLS record: it serves TLS.
        case tls
        /// Its `maxclients` refusal, verbatim.
        case refusal(String)
        /// Nothing (refused, reset, silent) or anything else.
        case other
    }

    /// Asks the server at `address` what it is, within `timeout`: connects,
    /// sends ``clientHello``, and reads the start of the answer. Asked only
    /// when a plain connection was closed before its first reply.
    static func greeting(of address: RedisServerAddress, within timeout: Duration) -> Greeting {
        guard case .tcp(let host, let port) = address,
              let context = redisConnectWithTimeout(host, Int32(port), timeval(timeout))
        else { return .other }
        defer { redisFree(context) }
        guard context.pointee.err == 0 else { return .other }
        let descriptor = context.pointee.fd
        let sent = clientHello.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == clientHello.count else { return .other }
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 128)
        let deadline = ContinuousClock.now + timeout
        while answer.count < 2 || (answer[0] == UInt8(ascii: "-") && !answer.contains(UInt8(ascii: "\n")) && answer.count < 128) {
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else { break }
            var waiting = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&waiting, 1, Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)) > 0 else { break }
            let count = chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { break }
            answer += chunk[..<count]
        }
        guard answer.count >= 2 else { return .other }
        if (answer[0] == 0x16 || answer[0] == 0x15) && answer[1] == 0x03 { return .tls }
        let line = String(decoding: answer.dropFirst().prefix { $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\n") }, as: UTF8.self)
        return answer[0] == UInt8(ascii: "-") && line.hasPrefix(tooManyClients) ? .refusal(line) : .other
    }

    private func contextError() -> RedisError {
        guard let context else { return RedisError(.closed, "the connection to \(address) is closed") }
        return classify(context, savedErrno: errno, during: .connecting)
    }

    /// Turns the context's error into a ``RedisError`` (see ``classify(hiredisError:text:errno:during:address:commandTimeout:connectTimeout:)``).
    private func classify(_ context: UnsafeMutablePointer<redisContext>, savedErrno: Int32, during phase: Phase) -> RedisError {
        let text = withUnsafeBytes(of: context.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return Self.classify(
            hiredisError: context.pointee.err, text: text, errno: savedErrno, during: phase,
            address: address, commandTimeout: commandTimeout, connectTimeout: connectTimeout
        )
    }

    /// Turns hiredis' error (`err`, `errstr`, and `errno` as it was) into a
    /// code that says what happened and a message that says it in words,
    /// with the address.
    static func classify(
        hiredisError: Int32, text: String, errno savedErrno: Int32, during phase: Phase,
        address: RedisServerAddress, commandTimeout: Duration?, connectTimeout: Duration
    ) -> RedisError {
        switch hiredisError {
        case REDIS_ERR_EOF:
            return RedisError(.connectionClosed, "\(address) closed the connection (\(text))")
        case REDIS_ERR_PROTOCOL:
            return RedisError(.protocolError, "\(address) sent a reply that cannot be parsed: \(text)")
        case REDIS_ERR_OOM:
            // The reply builder refused an item (a malformed array count) or
            // an allocation failed: the reply is unusable, and sending the
            // command again would not change that.
            return RedisError(.protocolError, "the reply from \(address) could not be built (hiredis: \(text))")
        case REDIS_ERR_IO:
            if savedErrno == ECONNREFUSED || savedErrno == ENOENT || text.contains("Connection refused") || text.contains("No such file or directory") {
                return RedisError(.connectionRefused, "\(address) refused the connection (\(text))")
            }
            let timedOut = savedErrno == EAGAIN || savedErrno == EWOULDBLOCK || savedErrno == ETIMEDOUT || savedErrno == EINPROGRESS
                || text.contains("timed out") || text.contains("Operation now in progress") || text.contains("Resource temporarily unavailable")
            if timedOut {
                switch phase {
                case .connecting:
                    return RedisError(.connectTimeout, "could not connect to \(address) within \(connectTimeout.readable) (connectTimeout)")
                case .writing:
                    return RedisError(.writeTimeout, "could not write the request to \(address) within \(commandTimeout?.readable ?? "the timeout") (commandTimeout): the server is not reading; the connection was reset")
                case .reading:
                    return RedisError(.readTimeout, "no reply from \(address) within \(commandTimeout?.readable ?? "the timeout") (commandTimeout); the connection was reset")
                }
            }
            if savedErrno == ECONNRESET || savedErrno == EPIPE || text.contains("Connection reset") || text.contains("Broken pipe") {
                return RedisError(.connectionClosed, "\(address) closed the connection (\(text))")
            }
            return RedisError(.io, "I/O error with \(address): \(text)")
        default:
            return RedisError(.io, "error with \(address): \(text)")
        }
    }
}
