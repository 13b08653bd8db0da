@testable import BaldurCache
import Foundation
import Testing

@Suite("Connection and replies")
struct ConnectionTests {
    @Test("every byte value 0...255, CRLF, NUL and spaces round-trip in keys and values", .ownThread)
    func binarySafety() throws {
        let client = try TestEnvironment.client()
        defer { client.close() }
        let keys = TestKeys()
        let allBytes = (0...255).map { UInt8($0) }
        let awkward: [[UInt8]] = [allBytes, Array("a\r\nb\0c d \r\n".utf8), [0], [13, 10], Array(" ".utf8)]
        for (index, value) in awkward.enumerated() {
            let key = Array(keys("bin\(index)").utf8) + [0, 13, 10, 32, 255]
            try client.send("SET", .bytes(key), .bytes(value))
            #expect(try client.send("GET", .bytes(key)) == .bulk(value))
            #expect(try client.send("DEL", .bytes(key)) == .integer(1))
        }
    }

    @Test("blocking replies of every size around the reader's 1 KiB feed slices, many to a read, arrive whole and in order, plain and over TLS", .ownThread)
    func blockingRepliesAcrossFeedSlicesArriveWhole() throws {
        // Lengths whose replies end just before, on and after a slice edge,
        // and values longer than one read (16 KiB) and than many slices.
        let lengths = Array(0...40) + Array(990...1060) + [2047, 2048, 2049, 16_383, 16_384, 16_385, 65_537, 200_003]
        func value(_ index: Int, _ length: Int) -> [UInt8] { (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) } }
        for url in [try TestEnvironment.url(), try TestEnvironment.tlsURL()] {
            let client = try RedisClient(url: url)
            defer { client.close() }
            let keys = TestKeys()
            _ = try client.pipeline(lengths.enumerated().map { index, length in
                ["SET", RedisArgument(keys("v\(index)")), .bytes(value(index, length)), "EX", "60"]
            })
            // One pipeline: all the replies back to back, several to a read.
            let replies = try client.pipeline(lengths.indices.map { ["GET", RedisArgument(keys("v\($0)"))] })
            #expect(replies.count == lengths.count)
            for (index, length) in lengths.enumerated() {
                #expect(replies[index] == .bulk(value(index, length)), "value \(index) of \(length) bytes over \(url)")
            }
            // One at a time on the same connection: nothing left over from the pipeline's reads.
            for (index, length) in lengths.enumerated() where index % 7 == 0 {
                #expect(try client.send("GET", RedisArgument(keys("v\(index)"))) == .bulk(value(index, length)))
            }
        }
    }

    @Test("an empty value round-trips and differs from a missing key", .ownThread)
    func emptyValue() throws {
        let client = try TestEnvironment.client()
        defer { client.close() }
        let keys = TestKeys()
        try client.send("SET", RedisArgument(keys("empty")), "")
        #expect(try client.send("GET", RedisArgument(keys("empty"))) == .bulk([]))
        #expect(try client.send("GET", RedisArgument(keys("missing"))) == .null)
        try client.send("DEL", RedisArgument(keys("empty")))
    }

    @Test("nested arrays from a Lua script come back intact", .ownThread)
    func nestedArrays() throws {
        let client = try TestEnvironment.client()
        defer { client.close() }
        let reply = try client.send("EVAL", "return {1, {2, {3, 'x', {}}}, 'y', {err='inner failure'}}", 0)
        #expect(reply == .array([
            .integer(1),
            .array([.integer(2), .array([.integer(3), .bulk(Array("x".utf8)), .array([])])]),
            .bulk(Array("y".utf8)),
            .error("inner failure"),
        ]))
    }

    @Test("a reply nested deeper than hiredis parses is a protocolError that drops the connection; the client goes on", .ownThread)
    func tooDeeplyNested() throws {
        let client = try TestEnvironment.client()
        defer { client.close() }
        // Eight levels parse; the ninth array is hiredis' protocol error, raised
        // after the outer arrays were already built.
        #expect(try client.send("EVAL", "return {{{{{{{{1}}}}}}}}", 0) == (0..<8).reduce(RedisReply.integer(1)) { inner, _ in .array([inner]) })
        let error = #expect(throws: RedisError.self) { try client.send("EVAL", "return {{{{{{{{{1}}}}}}}}}", 0) }
        #expect(error?.code == .protocolError)
        #expect(error?.message.contains("nested multi bulk") == true)
        #expect(try client.send("PING") == .status("PONG"))
    }

    @Test("a reply cut off inside an array times out, and the partial reply goes with the connection", .ownThread)
    func partialReply() throws {
        // A peer that answers the first command with half an array, then stalls.
        let peer = try ScriptedPeer(reply: "*3\r\n:1\r\n*2\r\n$5\r\nhello\r\n$5\r\nwor", hold: .seconds(1))
        let port = peer.port
        var configuration = RedisConfiguration(address: .tcp(host: "127.0.0.1", port: port))
        configuration.commandTimeout = .milliseconds(200)
        configuration.pool.spinWait = .zero
        let connection = try RedisConnection(address: .tcp(host: "127.0.0.1", port: port), configuration: configuration)
        let error = #expect(throws: RedisError.self) { try connection.send(["PING"]) }
        #expect(error?.code == .readTimeout)
        #expect(!connection.isOpen)
        #expect(throws: RedisError.self) { try connection.send(["PING"]) }
    }

    @Test("a server error carries its prefix and leaves the connection usable", .ownThread)
    func serverErrorKeepsConnection() throws {
        let connection = try RedisConnection(address: .tcp(host: "127.0.0.1", port: plainPort()), configuration: TestEnvironment.configuration())
        let keys = TestKeys()
        try connection.send(["SET", RedisArgument(keys("text")), "abc"])
        let error = #expect(throws: RedisError.self) { try connection.send(["LPUSH", RedisArgument(keys("text")), "x"]) }
        #expect(error?.code == .server)
        #expect(error?.prefix == "WRONGTYPE")
        #expect(error?.message.hasPrefix("WRONGTYPE Operation against a key holding the wrong kind of value") == true)
        #expect(connection.isOpen)
        #expect(try connection.send(["PING"]) == .status("PONG"))
        try connection.send(["DEL", RedisArgument(keys("text"))])
    }

    @Test("a pipeline returns one reply per command, errors as values, in order", .ownThread)
    func pipelineOrder() throws {
        let client = try TestEnvironment.client()
        defer { client.close() }
        let keys = TestKeys()
        let key = RedisArgument(keys("counter"))
        var commands: [[RedisArgument]] = (1...1000).map { _ in ["INCR", key] }
        commands.append(["HSET", key, "f", "v"])
        commands.append(["GET", key])
        let replies = try client.pipeline(commands)
        #expect(replies.count == 1002)
        #expect(replies[0] == .integer(1))
        #expect(replies[999] == .integer(1000))
        #expect(replies[1000].string == nil)
        if case .error(let message) = replies[1000] { #expect(message.hasPrefix("WRONGTYPE")) } else { Issue.record("expected an error reply") }
        #expect(replies[1001] == .bulk(Array("1000".utf8)))
        #expect(try client.pipeline([]) == [])
        try client.send("DEL", key)
    }

    @Test("connecting to a port nobody listens on gives connectionRefused", .ownThread)
    func connectionRefused() throws {
        let port = try freeLoopbackPort()
        let client = try RedisClient(url: "redis://127.0.0.1:\(port)")
        let error = #expect(throws: RedisError.self) { try client.ping() }
        #expect(error?.code == .connectionRefused)
        #expect(error?.message.contains("127.0.0.1:\(port)") == true)
    }

    @Test("a unix socket that does not exist gives connectionRefused", .ownThread)
    func unixSocketMissing() throws {
        let client = try RedisClient(url: "unix:///nonexistent/baldur-\(UUID().uuidString).sock")
        let error = #expect(throws: RedisError.self) { try client.ping() }
        #expect(error?.code == .connectionRefused)
    }

    @Test("the unix-socket server answers, with SELECT applied from ?db=", .ownThread)
    func unixSocket() throws {
        let socket = try TestEnvironment.value("BALDUR_TEST_REDIS_UNIX_SOCKET")
        let client = try RedisClient(url: "unix://\(socket)?db=3")
        defer { client.close() }
        try client.ping()
        let keys = TestKeys()
        try client.send("SET", RedisArgument(keys("db")), "three")
        let db0 = try RedisClient(url: "unix://\(socket)")
        defer { db0.close() }
        #expect(try db0.send("EXISTS", RedisArgument(keys("db"))) == .integer(0))
        #expect(try client.send("GET", RedisArgument(keys("db"))).string == "three")
        try client.send("DEL", RedisArgument(keys("db")))
    }

    @Test("AUTH with the password, and with an ACL user, succeeds; wrong or missing credentials give their codes", .ownThread)
    func authentication() throws {
        let address = try TestEnvironment.authAddress()
        let password = try TestEnvironment.value("BALDUR_TEST_REDIS_AUTH_PASSWORD")
        let aclUser = try TestEnvironment.value("BALDUR_TEST_REDIS_ACL_USER")
        let aclPassword = try TestEnvironment.value("BALDUR_TEST_REDIS_ACL_PASSWORD")

        try RedisClient(configuration: RedisConfiguration(address: address, password: password)).ping()
        let acl = try RedisClient(configuration: RedisConfiguration(address: address, username: aclUser, password: aclPassword))
        #expect(try acl.send("ACL", "WHOAMI").string == aclUser)

        let wrong = try RedisClient(configuration: RedisConfiguration(address: address, password: "not-the-password"))
        let wrongError = #expect(throws: RedisError.self) { try wrong.ping() }
        #expect(wrongError?.code == .server)
        #expect(wrongError?.prefix == "WRONGPASS")
        #expect(wrongError?.description.contains("not-the-password") == false)

        let none = try RedisClient(configuration: RedisConfiguration(address: address))
        let noneError = #expect(throws: RedisError.self) { try none.ping() }
        #expect(noneError?.prefix == "NOAUTH")
    }

    @Test("a server killed mid-session gives a typed error; after a restart on the same port the next call succeeds", .ownThread)
    func serverKilledAndRestarted() throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        var configuration = try server.configuration()
        configuration.retry.onTimeout = false
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        try client.send("SET", "k", "before")
        server.kill()
        let error = #expect(throws: RedisError.self) { try client.send("SET", "k", "during") }
        #expect(error.map { [.connectionClosed, .connectionRefused, .io].contains($0.code) } == true)
        #expect(client.openConnections == 0)
        try server.start()
        try client.send("SET", "k", "after")
        #expect(try client.send("GET", "k").string == "after")
    }

    @Test("a stalled server gives readTimeout near the configured timeout, and that connection is discarded", .ownThread)
    func stalledServerTimesOut() throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        let client = try RedisClient(configuration: server.configuration(commandTimeout: .milliseconds(300)))
        defer { client.close() }
        try client.ping()
        #expect(client.openConnections == 1)
        let pauser = try RedisConnection(address: .tcp(host: "127.0.0.1", port: server.port), configuration: server.configuration())
        try pauser.send(["CLIENT", "PAUSE", "1500", "ALL"])
        let start = ContinuousClock.now
        let error = #expect(throws: RedisError.self) { try client.send("INCR", "stalled") }
        let elapsed = ContinuousClock.now - start
        #expect(error?.code == .readTimeout)
        // Correctness, not speed: the call ends because of the 300 ms timeout,
        // long before the 1.5 s pause would have let it through.
        #expect(elapsed >= .milliseconds(250) && elapsed < .milliseconds(1400))
        #expect(client.openConnections == 0)
        try pauser.send(["CLIENT", "UNPAUSE"])
        // The late INCR reply went to the discarded socket; a fresh connection sees a clean stream.
        #expect(try client.send("ECHO", "fresh").string == "fresh")
    }

    @Test("a pooled connection the server closed while idle is replaced before the next command, writes included", .ownThread)
    func staleIdleConnectionReplaced() throws {
        let client = try TestEnvironment.client(maxConnections: 1)
        defer { client.close() }
        let killer = try TestEnvironment.client()
        defer { killer.close() }
        let keys = TestKeys()
        let key = RedisArgument(keys("stale"))
        for _ in 0..<3 {
            let id = try client.send("CLIENT", "ID").integer!
            #expect(try killer.send("CLIENT", "KILL", "ID", RedisArgument(id)) == .integer(1))
            Thread.sleep(forTimeInterval: 0.05)
            try client.send("SET", key, "written")
            #expect(try client.send("CLIENT", "ID").integer != id)
        }
        #expect(try client.send("GET", key).string == "written")
        try client.send("DEL", key)
    }

    @Test("a read-only command that times out is retried once on a fresh connection; a write is not", .ownThread)
    func retryOnlyReadOnly() throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        let client = try RedisClient(configuration: server.configuration(commandTimeout: .milliseconds(400)))
        defer { client.close() }
        let admin = try RedisClient(configuration: server.configuration())
        defer { admin.close() }
        try client.send("SET", "k", "v")

        // Paused for 500 ms: the first GET times out at 400 ms, the retry is
        // answered when the pause ends, well inside its own 400 ms.
        try admin.send("CLIENT", "PAUSE", "500", "ALL")
        #expect(try client.send("GET", "k").string == "v")

        try admin.send("CLIENT", "PAUSE", "500", "ALL")
        let error = #expect(throws: RedisError.self) { try client.send("SET", "k", "w") }
        #expect(error?.code == .readTimeout)

        var noRetry = try server.configuration(commandTimeout: .milliseconds(400))
        noRetry.retry.onTimeout = false
        let strict = try RedisClient(configuration: noRetry)
        defer { strict.close() }
        try strict.ping()
        try admin.send("CLIENT", "PAUSE", "500", "ALL")
        let readError = #expect(throws: RedisError.self) { try strict.send("GET", "k") }
        #expect(readError?.code == .readTimeout)
    }
}

func plainPort() throws -> Int {
    guard case .standalone(.tcp(_, let port)) = try TestEnvironment.configuration().topology else {
        throw RedisError(.invalidConfiguration, "BALDUR_TEST_REDIS_URL is not a TCP URL")
    }
    return port
}

@Suite("Connect timeout")
struct ConnectTimeoutTests {
    @Test("a listener that never completes the handshake gives connectTimeout near the configured timeout", .ownThread)
    func connectTimeout() throws {
        // A loopback listener with a backlog of 0 that never accepts: once its
        // queue is full, the kernel drops further SYNs and connect() hangs.
        let (listener, port) = try boundLoopbackSocket()
        defer { close(listener) }
        #expect(listen(listener, 0) == 0)
        var configuration = RedisConfiguration(address: .tcp(host: "127.0.0.1", port: port))
        configuration.connectTimeout = .milliseconds(300)
        // Fill the accept queue with connections nobody accepts.
        var fillers: [RedisConnection] = []
        var timedOut: RedisError?
        for _ in 0..<8 {
            let start = ContinuousClock.now
            do {
                fillers.append(try RedisConnection(address: .tcp(host: "127.0.0.1", port: port), configuration: configuration))
            } catch {
                timedOut = error
                #expect(ContinuousClock.now - start >= .milliseconds(250))
                break
            }
        }
        #expect(timedOut?.code == .connectTimeout)
        _ = fillers
    }
}
