import COpenSSL
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// TLS over a socket hiredis connected: the only code in BaldurCache that
/// calls OpenSSL.
///
/// hiredis 0.14 has no TLS, so it connects the TCP socket and parses every
/// reply as before, while the bytes on the wire go through `SSL_write` and
/// `SSL_read` here (what hiredis 1.x's own `ssl.c` does). The handshake runs
/// at connect, within `connectTimeout`; afterwards the transport works on a
/// blocking socket (the synchronous path: `SO_RCVTIMEO`/`SO_SNDTIMEO` make a
/// stalled read or write come back as ``TransportProgress/wouldBlock``) or a
/// non-blocking one (the event loop).
///
/// One connection owns one transport and uses it from one thread at a time.
/// The `SSL` object is freed in `deinit`; it never closes the socket, which
/// stays the hiredis context's.
final class TLSTransport {
    /// The socket, owned by the hiredis context.
    let descriptor: Int32
    private let ssl: OpaquePointer
    /// Keeps the `SSL_CTX` alive as long as the `SSL` made from it.
    private let context: Context

    /// Runs the TLS handshake on `descriptor` (connected, blocking) within
    /// `timeout`, checking the server's certificate as `configuration` says.
    /// The socket is blocking again afterwards.
    ///
    /// - Parameters:
    ///   - host: The name or IP literal connected to: sent as SNI (names
    ///     only) and checked against the certificate.
    ///   - address: For error messages.
    /// - Throws: ``RedisError`` with code `tls` saying what failed (unknown
    ///   CA, name mismatch, expired certificate, not a TLS server...),
    ///   `connectTimeout` when the handshake did not finish in time,
    ///   `connectionClosed` or `io` for socket failures, or
    ///   `invalidConfiguration` when a CA or certificate file cannot be read.
    init(
        descriptor: Int32, host: String, configuration: RedisTLSConfiguration,
        timeout: Duration, address: RedisServerAddress
    ) throws(RedisError) {
        let context = try Context.shared(for: configuration)
        guard let ssl = SSL_new(context.pointer) else {
            throw RedisError(.tls, "could not start TLS with \(address): \(Self.drainErrors() ?? "SSL_new failed")")
        }
        self.descriptor = descriptor
        self.ssl = ssl
        self.context = context
        guard SSL_set_fd(ssl, descriptor) == 1 else {
            throw RedisError(.tls, "could not start TLS with \(address): \(Self.drainErrors() ?? "SSL_set_fd failed")")
        }
        let isAddressLiteral = Self.isIPLiteral(host)
        if !isAddressLiteral {
            // SNI: SSL_set_tlsext_host_name is a macro over SSL_ctrl.
            _ = host.withCString { SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: $0)) }
        }
        if configuration.peerVerification != .insecureNoVerification, configuration.checkHostName {
            let accepted = isAddressLiteral
                ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
                : SSL_set1_host(ssl, host)
            guard accepted == 1 else {
                throw RedisError(.invalidConfiguration, "'\(host)' cannot be checked against a TLS certificate")
            }
        }
        try handshake(timeout: timeout, host: host, address: address)
    }

    deinit {
        SSL_free(ssl)
    }

    /// `true` when the server asked for a client certificate during the
    /// handshake and none was configured. With TLS 1.3 the server's verdict
    /// comes only with its first record after the handshake, so the caller
    /// sends one command to surface it at connect.
    var serverAskedForMissingCertificate: Bool { SSL_get_ex_data(ssl, 0) != nil }

    /// `true` when OpenSSL holds input read from the socket but not yet
    /// returned by ``read(into:)``.
    var hasBufferedInput: Bool { SSL_has_pending(ssl) != 0 }

    /// After `poll(2)` found the idle socket readable: `true` when what
    /// arrived is data, an end of stream or an error; `false` when it was
    /// only TLS housekeeping (a session ticket, a key update), which this
    /// consumes. One non-blocking `SSL_peek`.
    func hasInputBeyondHousekeeping() -> Bool {
        var byte: UInt8 = 0
        let progress = nonBlocking { transfer { SSL_peek(ssl, &byte, 1) } }
        return progress != .wouldBlock
    }

    /// Reads decrypted bytes, up to `buffer.count` (`SSL_read`).
    func read(into buffer: UnsafeMutableRawBufferPointer) -> TransportProgress {
        transfer { SSL_read(ssl, buffer.baseAddress, Int32(clamping: buffer.count)) }
    }

    /// Encrypts and writes as much of `bytes` as the socket takes now
    /// (`SSL_write`, partial writes on). After ``TransportProgress/wouldBlock``
    /// the caller retries with the same bytes, or more bytes that start
    /// with them, as OpenSSL requires.
    func write(_ bytes: UnsafeRawBufferPointer) -> TransportProgress {
        guard !bytes.isEmpty else { return .moved(0) }
        return transfer { SSL_write(ssl, bytes.baseAddress, Int32(clamping: bytes.count)) }
    }

    // MARK: - Internals

    /// Runs one `SSL_read`/`SSL_write`/`SSL_peek` (`call`) with a clean
    /// error queue, again after `EINTR`, and says what it did.
    private func transfer(_ call: () -> Int32) -> TransportProgress {
        while true {
            ERR_clear_error()
            let count = call()
            if count > 0 { return .moved(Int(count)) }
            let progress = failure(of: count)
            if progress != .failed(EINTR) { return progress }
        }
    }

    /// Runs `body` with the socket non-blocking, restoring its flags after;
    /// `nil` when the flags cannot be changed.
    private func nonBlocking<R>(_ body: () -> R) -> R? {
        let flags = fcntl(descriptor, F_GETFL)
        guard flags >= 0, fcntl(descriptor, F_SETFL, flags | O_NONBLOCK) == 0 else { return nil }
        defer { _ = fcntl(descriptor, F_SETFL, flags) }
        return body()
    }

    /// What a failed `SSL_read`/`SSL_write`/`SSL_connect` returning `result` means.
    private func failure(of result: Int32) -> TransportProgress {
        let savedErrno = errno
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .wouldBlock
        case SSL_ERROR_ZERO_RETURN:
            return .endOfStream
        case SSL_ERROR_SYSCALL:
            if let text = Self.drainErrors() { return .tlsFailed(text) }
            // OpenSSL 3 with SSL_OP_IGNORE_UNEXPECTED_EOF reports an EOF
            // without close_notify as ZERO_RETURN; an older one as this.
            return savedErrno == 0 ? .endOfStream : .failed(savedErrno)
        default:
            return .tlsFailed(Self.drainErrors() ?? "unknown TLS error")
        }
    }

    private func handshake(timeout: Duration, host: String, address: RedisServerAddress) throws(RedisError) {
        let outcome = nonBlocking { Result { () throws(RedisError) in try handshakeSteps(timeout: timeout, host: host, address: address) } }
        guard let outcome else {
            throw RedisError(.io, "could not make the socket to \(address) non-blocking for the TLS handshake (errno \(errno))")
        }
        try outcome.get()
    }

    /// `SSL_connect` until done, polling the non-blocking socket in between.
    private func handshakeSteps(timeout: Duration, host: String, address: RedisServerAddress) throws(RedisError) {
        let deadline = ContinuousClock.now + timeout
        SSL_set_connect_state(ssl)
        while true {
            ERR_clear_error()
            let result = SSL_connect(ssl)
            if result == 1 { return }
            let events: Int16
            switch SSL_get_error(ssl, result) {
            case SSL_ERROR_WANT_READ: events = Int16(POLLIN)
            case SSL_ERROR_WANT_WRITE: events = Int16(POLLOUT)
            default: throw handshakeError(failure(of: result), host: host, address: address)
            }
            let remaining = deadline - ContinuousClock.now
            let milliseconds = remaining <= .zero ? 0 : Int32(clamping: remaining.wholeMillisecondsRoundedUp)
            var descriptor = pollfd(fd: self.descriptor, events: events, revents: 0)
            let ready = milliseconds == 0 ? 0 : poll(&descriptor, 1, milliseconds)
            if ready == 0 {
                throw RedisError(.connectTimeout, "the TLS handshake with \(address) did not finish within \(timeout.readable) (connectTimeout); if it is a plain redis:// server, connect without TLS")
            }
            if ready < 0, errno != EINTR {
                throw RedisError(.io, "waiting for the TLS handshake with \(address) failed (errno \(errno))")
            }
        }
    }

    /// Says in words why the handshake failed.
    private func handshakeError(_ progress: TransportProgress, host: String, address: RedisServerAddress) -> RedisError {
        let verdict = SSL_get_verify_result(ssl)
        if verdict != X509_V_OK {
            let reason: String
            switch Int32(verdict) {
            case X509_V_ERR_CERT_HAS_EXPIRED:
                reason = "the server's certificate has expired"
            case X509_V_ERR_CERT_NOT_YET_VALID:
                reason = "the server's certificate is not valid yet"
            case X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH:
                reason = "the server's certificate is not for '\(host)' (host name mismatch; ssl_check_hostname=false turns this check off)"
            case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN,
                 X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT,
                 X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
                reason = "the server's certificate is signed by an unknown CA (\(context.trustDescription))"
            default:
                reason = "the server's certificate did not verify (\(String(cString: X509_verify_cert_error_string(verdict))))"
            }
            return RedisError(.tls, "TLS handshake with \(address) failed: \(reason)")
        }
        switch progress {
        case .endOfStream:
            return RedisError(.tls, "\(address) closed the connection during the TLS handshake (does it serve TLS on this port?)")
        case .failed(let code):
            return RedisError(code == ECONNRESET ? .connectionClosed : .io, "TLS handshake with \(address) failed: \(String(cString: strerror(code)))")
        case .tlsFailed(let text):
            return RedisError(.tls, "TLS handshake with \(address) failed: \(text)")
        case .moved, .wouldBlock:
            return RedisError(.tls, "TLS handshake with \(address) failed")
        }
    }

    /// Empties OpenSSL's error queue (per thread) and says the first error
    /// in words; `nil` when it was empty.
    private static func drainErrors() -> String? {
        var first: UInt = 0
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            if first == 0 { first = code }
        }
        guard first != 0 else { return nil }
        guard let raw = ERR_reason_error_string(first) else { return "OpenSSL error \(first)" }
        let reason = String(cString: raw)
        switch reason {
        case "wrong version number", "packet length too long", "record layer failure", "http request":
            return "the server did not answer in TLS (\(reason)); if it is a plain redis:// server, connect without TLS"
        case "tlsv13 alert certificate required":
            return "the server demanded a client certificate (\(reason)); set ssl_certfile and ssl_keyfile"
        case "tlsv1 alert unknown ca", "sslv3 alert bad certificate", "tlsv1 alert decrypt error":
            return "the server rejected our client certificate (\(reason))"
        default:
            return reason
        }
    }

    private static func isIPLiteral(_ host: String) -> Bool {
        var scratch = in6_addr()
        return inet_pton(AF_INET, host, &scratch) == 1 || inet_pton(AF_INET6, host, &scratch) == 1
    }

    /// One `SSL_CTX` per distinct ``RedisTLSConfiguration`` in the process:
    /// reading a CA store takes milliseconds, so every connection of a
    /// configuration shares the one built for it.
    final class Context: @unchecked Sendable {
        // Why @unchecked Sendable is safe: the SSL_CTX is fully set up in
        // init and never changed afterwards; OpenSSL documents creating SSL
        // objects from a configured SSL_CTX as safe from any thread.
        let pointer: OpaquePointer
        /// Where trust comes from, for error messages: the CA file or directory, or the system store.
        let trustDescription: String

        private static let contexts = PlainMutex<[RedisTLSConfiguration: Context]>([:])

        /// Initialises OpenSSL once, before any other call, without its
        /// `atexit` cleanup: that cleanup frees OpenSSL's tables while other
        /// threads (a connection's, a Sentinel watcher's) may still be in
        /// the middle of `SSL_read`, which crashed a process on exit.
        private static let initialised: Bool = OPENSSL_init_ssl(
            UInt64(OPENSSL_INIT_NO_ATEXIT | OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS), nil
        ) == 1

        static func shared(for configuration: RedisTLSConfiguration) throws(RedisError) -> Context {
            guard initialised else { throw RedisError(.tls, "OpenSSL could not be initialised: \(TLSTransport.drainErrors() ?? "OPENSSL_init_ssl failed")") }
            return try contexts.withLock { (contexts) throws(RedisError) -> Context in
                if let existing = contexts[configuration] { return existing }
                let made = try Context(configuration)
                contexts[configuration] = made
                return made
            }
        }

        private init(_ configuration: RedisTLSConfiguration) throws(RedisError) {
            ERR_clear_error()
            guard let pointer = SSL_CTX_new(TLS_client_method()) else {
                throw RedisError(.tls, "could not create a TLS context: \(TLSTransport.drainErrors() ?? "SSL_CTX_new failed")")
            }
            // From here on deinit frees the context, also when init throws.
            self.pointer = pointer
            switch (configuration.caFile, configuration.caDirectory) {
            case (nil, nil): trustDescription = "not in the system CA store; set ssl_ca_certs for a private CA"
            case (let file?, nil): trustDescription = "not in ssl_ca_certs \(file)"
            case (nil, let directory?): trustDescription = "not in ssl_ca_path \(directory)"
            case (let file?, let directory?): trustDescription = "not in ssl_ca_certs \(file) or ssl_ca_path \(directory)"
            }
            // SSL_CTX_set_min_proto_version and SSL_CTX_set_mode are macros over SSL_CTX_ctrl.
            _ = SSL_CTX_ctrl(pointer, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil)
            _ = SSL_CTX_ctrl(pointer, SSL_CTRL_MODE, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER), nil)
            // Read ahead: one read(2) takes every record the socket holds,
            // where OpenSSL would otherwise read each record's header and body
            // apart (two syscalls per reply). What it holds back is seen by
            // SSL_has_pending (``hasBufferedInput``), never by poll(2).
            _ = SSL_CTX_ctrl(pointer, SSL_CTRL_SET_READ_AHEAD, 1, nil)
            // SSL_OP_IGNORE_UNEXPECTED_EOF (bit 7): a peer that closes without
            // close_notify is an end of stream, as for a plain socket.
            _ = SSL_CTX_set_options(pointer, UInt64(1) << 7)
            if configuration.peerVerification == .insecureNoVerification {
                SSL_CTX_set_verify(pointer, SSL_VERIFY_NONE, nil)
            } else {
                SSL_CTX_set_verify(pointer, SSL_VERIFY_PEER, nil)
                let loaded = configuration.caFile != nil || configuration.caDirectory != nil
                    ? SSL_CTX_load_verify_locations(pointer, configuration.caFile, configuration.caDirectory)
                    : SSL_CTX_set_default_verify_paths(pointer)
                guard loaded == 1 else {
                    let what = configuration.caFile.map { "ssl_ca_certs '\($0)'" } ?? configuration.caDirectory.map { "ssl_ca_path '\($0)'" } ?? "the system CA store"
                    throw RedisError(.invalidConfiguration, "could not load \(what): \(TLSTransport.drainErrors() ?? "unreadable")")
                }
            }
            if let certificate = configuration.certificateFile {
                let key = configuration.privateKeyFile ?? certificate
                guard SSL_CTX_use_certificate_chain_file(pointer, certificate) == 1 else {
                    throw RedisError(.invalidConfiguration, "could not load ssl_certfile '\(certificate)': \(TLSTransport.drainErrors() ?? "unreadable")")
                }
                guard SSL_CTX_use_PrivateKey_file(pointer, key, SSL_FILETYPE_PEM) == 1,
                      SSL_CTX_check_private_key(pointer) == 1 else {
                    throw RedisError(.invalidConfiguration, "could not load ssl_keyfile '\(key)' for ssl_certfile '\(certificate)': \(TLSTransport.drainErrors() ?? "the key does not match the certificate")")
                }
            } else {
                // Called when the server asks for a certificate and we have
                // none: mark the connection (ex_data 0) and go on without.
                SSL_CTX_set_client_cert_cb(pointer) { ssl, _, _ in
                    SSL_set_ex_data(ssl, 0, UnsafeMutableRawPointer(bitPattern: 1))
                    return 0
                }
            }
        }

        deinit { SSL_CTX_free(pointer) }
    }
}
