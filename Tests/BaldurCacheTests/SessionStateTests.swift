@testable import BaldurCache
import CHiredis
import Foundation
import Synchronization
import Testing

/// Hardening: a pooled connection goes back to the pool only as it came
/// out: no unread reply, no open transaction, the configured database, no
/// subscription. Otherwise the next caller would get someone else's reply.
@Suite("Pooled connections never carry state to the next caller")
struct SessionStateTests {
    /// A client with one pooled connection, so every call shares it unless it is discarded.
    static func singleConnectionClient() throws -> RedisClient { try TestEnvironment.client(maxConnections: 1) }

    @Test("SUBSCRIBE through pooled send is invalidArgument naming receive(); the next caller's replies stay in step", .ownThread)
    func subscribeThroughThePoolIsRefused() throws {
        let client = try Self.singleConnectionClient()
        defer { client.close() }
        for command: [RedisArgument] in [["SUBSCRIBE", "a", "b"], ["psubscribe", "a*"], ["SSUBSCRIBE", "a"], ["MONITOR"]] {
            let error = #expect(throws: RedisError.self) { try client.send(command) }
            #expect(error?.code == .invalidArgument)
            #expect(error?.message.contains("receive()") == true)
            let inPipeline = #expect(throws: RedisError.self) { try client.pipeline([["PING"], command]) }
            #expect(inPipeline?.code == .invalidArgument)
        }
        #expect(try client.send("ECHO", "in step").string == "in step")
        #expect(try client.send("PING") == .status("PONG"))
    }

    @Test("a SUBSCRIBE of two channels inside withConnection leaves its second confirmation unread: the connection is discarded, not reused", .ownThread)
    func unreadRepliesDiscardTheConnection() throws {
        let client = try Self.singleConnectionClient()
        defer { client.close() }
        try client.ping()
        let first = try client.withConnection { connection in try connection.send(["SUBSCRIBE", "bctest-a", "bctest-b"]) }
        #expect(first.array?.first?.string == "subscribe")
        // Before: the next caller got ["subscribe", "bctest-b", 2], and every reply after it was one behind.
        #expect(try client.send("PING") == .status("PONG"))
        #expect(try client.send("ECHO", "mine").string == "mine")
    }

    @Test("MULTI left open by one caller does not turn the next caller's SET into QUEUED: the write lands", .ownThread)
    func openTransactionIsNotReused() throws {
        let client = try Self.singleConnectionClient()
        defer { client.close() }
        let cache = try RedisCacheAdapter(client: client, keyPrefix: TestKeys().prefix)
        try client.send("MULTI")
        try cache.set("after-multi", "written", ttl: .seconds(60))
        #expect(try cache.get("after-multi", as: String.self) == "written")
        try cache.delete("after-multi")
    }

    @Test("a withConnection body that throws mid-transaction leaves nothing queued for the next caller", .ownThread)
    func throwingTransactionBody() throws {
        struct Abandon: Error {}
        let client = try Self.singleConnectionClient()
        defer { client.close() }
        let keys = TestKeys()
        #expect(throws: Abandon.self) {
            try client.withConnection { connection in
                try connection.send(["MULTI"])
                try connection.send(["SET", RedisArgument(keys("queued")), "never"])
                throw Abandon()
            }
        }
        #expect(try client.send("SET", RedisArgument(keys("next")), "landed") == .status("OK"))
        #expect(try client.send("GET", RedisArgument(keys("next"))).string == "landed")
        #expect(try client.send("EXISTS", RedisArgument(keys("queued"))) == .integer(0))
        try client.send("DEL", RedisArgument(keys("next")))
    }

    @Test("SELECT of another database by one caller does not move the next caller's writes there", .ownThread)
    func selectIsNotReused() throws {
        let client = try Self.singleConnectionClient()
        defer { client.close() }
        let keys = TestKeys()
        try client.send("SELECT", "7")
        try client.send("SET", RedisArgument(keys("where")), "db0")
        let checker = try TestEnvironment.client()
        defer { checker.close() }
        #expect(try checker.send("GET", RedisArgument(keys("where"))).string == "db0")
        try checker.send("DEL", RedisArgument(keys("where")))
        // SELECT of the configured database, and a transaction that ends, keep the connection.
        try client.send("SELECT", "0")
        _ = try client.pipeline([["MULTI"], ["INCR", RedisArgument(keys("n"))], ["EXEC"]])
        let id = try client.send("CLIENT", "ID")
        #expect(try client.send("CLIENT", "ID") == id)
        try client.send("DEL", RedisArgument(keys("n")))
    }

    @Test("CLIENT REPLY OFF and SKIP are invalidArgument on every request/reply path, never a hang", .ownThread)
    func clientReplyOffIsRefused() throws {
        let client = try Self.singleConnectionClient()
        defer { client.close() }
        for mode in ["OFF", "skip"] {
            let error = #expect(throws: RedisError.self) { try client.send("CLIENT", "REPLY", RedisArgument(mode)) }
            #expect(error?.code == .invalidArgument)
            let direct = #expect(throws: RedisError.self) {
                try client.withConnection { connection in try connection.send(["CLIENT", "REPLY", RedisArgument(mode)]) }
            }
            #expect(direct?.code == .invalidArgument)
        }
        #expect(try client.send("CLIENT", "REPLY", "ON") == .status("OK"))
        #expect(try client.send("ECHO", "answered").string == "answered")
    }

    @Test("a connection of one's own subscribes, and receive() reads the further confirmations and the messages", .ownThread)
    func receiveServesSubscriptions() throws {
        let configuration = try TestEnvironment.configuration()
        guard case .standalone(let address) = configuration.topology else { return }
        let listener = try RedisConnection(address: address, configuration: configuration)
        defer { listener.close() }
        let channel = "bctest-\(UUID().uuidString)"
        let first = try listener.send(["SUBSCRIBE", RedisArgument(channel + "-a"), RedisArgument(channel + "-b")])
        #expect(first == .array([.bulk(Array("subscribe".utf8)), .bulk(Array((channel + "-a").utf8)), .integer(1)]))
        #expect(try listener.receive() == .array([.bulk(Array("subscribe".utf8)), .bulk(Array((channel + "-b").utf8)), .integer(2)]))
        let publisher = try TestEnvironment.client()
        defer { publisher.close() }
        #expect(try publisher.send("PUBLISH", RedisArgument(channel + "-b"), "hello") == .integer(1))
        #expect(try listener.receive() == .array([.bulk(Array("message".utf8)), .bulk(Array((channel + "-b").utf8)), .bulk(Array("hello".utf8))]))
    }

    @Test("the session tracker tells the commands that change a session from the rest, in any letter case", .ownThread)
    func sessionTracking() {
        var session = SessionState(configuredDatabase: 2)
        #expect(session.isClean)
        for command: [RedisArgument] in [["GET", "k"], ["SET", "k", "v"], ["EVALSHA", "x", "0"], ["CLIENT", "ID"], ["SELECT", "2"], ["exec"], ["UNWATCH"]] {
            session.observe(command)
        }
        #expect(session.isClean)
        session.observe(["multi"])
        #expect(!session.isClean)
        session.observe(["EXEC"])
        #expect(session.isClean)
        session.observe(["WATCH", "k"])
        #expect(!session.isClean)
        session.observe(["DISCARD"])
        #expect(session.isClean)
        session.observe(["select", "3"])
        #expect(!session.isClean)
        session.observe(["SELECT", "2"])
        #expect(session.isClean)
        for command: [RedisArgument] in [
            ["Subscribe", "c"], ["MONITOR"], ["RESET"], ["CLIENT", "REPLY", "ON"], ["HELLO", "3"], ["hello", "2", "AUTH", "u", "p"],
            ["AUTH", "p"], ["auth", "u", "p"], ["QUIT"], ["CLIENT", "setname", "x"], ["CLIENT", "TRACKING", "on"], ["CLIENT", "NO-EVICT", "on"],
        ] {
            var fresh = SessionState(configuredDatabase: 0)
            fresh.observe(command)
            #expect(!fresh.isClean, "\(command)")
        }
        // These only look: HELLO without arguments reports the protocol; CLIENT ID, GETNAME, LIST, INFO.
        for command: [RedisArgument] in [["HELLO"], ["CLIENT", "ID"], ["client", "getname"], ["CLIENT", "LIST"], ["CLIENT", "INFO"]] {
            var fresh = SessionState(configuredDatabase: 0)
            fresh.observe(command)
            #expect(fresh.isClean, "\(command)")
        }
    }

    /// A user that may only run `ACL WHOAMI` and `AUTH` (or what `rules` say), on the shared test server; removed by the caller.
    static func limitedUser(_ rules: [RedisArgument] = ["-@all", "+acl|whoami", "+auth", "+ping"]) throws -> (name: String, password: String) {
        let name = "bctest-limited-\(UUID().uuidString)", password = "pw-\(UUID().uuidString)"
        let admin = try TestEnvironment.client()
        defer { admin.close() }
        try admin.send(["ACL", "SETUSER", RedisArgument(name), "on", RedisArgument(">" + password)] + rules)
        return (name, password)
    }

    @Test("a connection's own AUTH and SELECT at connect leave it reusable: one pooled connection serves call after call")
    func connectionsWithAuthAndDatabaseAreReused() async throws {
        let user = try Self.limitedUser(["+@all", "~*"])
        defer { Self.removeUser(user.name) }
        guard case .standalone(.tcp(let host, let port)) = try TestEnvironment.configuration().topology else { return }
        var configuration = try RedisConfiguration(url: "redis://\(user.name):\(user.password)@\(host):\(port)/3")
        configuration.pool.maxConnections = 1
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        let blocking = try { () throws -> [RedisReply] in [try client.send("CLIENT", "ID"), try client.send("CLIENT", "ID")] }()
        #expect(blocking[0] == blocking[1])
        let dedicated = try await client.withConnection { connection in try await connection.send(["CLIENT", "ID"]) }
        let again = try await client.withConnection { connection in try await connection.send(["CLIENT", "ID"]) }
        #expect(dedicated == again)
    }

    static func removeUser(_ name: String) {
        guard let admin = try? TestEnvironment.client() else { return }
        defer { admin.close() }
        _ = try? admin.send("ACL", "DELUSER", RedisArgument(name))
    }

    @Test("AUTH as another user on a pooled connection does not change the next caller's user: the connection is discarded", .ownThread)
    func authIsNotReusedOnTheBlockingPool() throws {
        let user = try Self.limitedUser()
        defer { Self.removeUser(user.name) }
        let client = try Self.singleConnectionClient()
        defer { client.close() }
        let keys = TestKeys()
        try client.send("AUTH", RedisArgument(user.name), RedisArgument(user.password))
        // Before: NOPERM here, and ACL WHOAMI answered the limited user.
        #expect(try client.send("SET", RedisArgument(keys("after-auth")), "landed") == .status("OK"))
        #expect(try client.send("ACL", "WHOAMI").string == "default")
        try client.withConnection { connection in
            _ = try connection.send(["AUTH", RedisArgument(user.name), RedisArgument(user.password)])
            #expect(try connection.send(["ACL", "WHOAMI"]).string == user.name)
        }
        #expect(try client.send("ACL", "WHOAMI").string == "default")
        // QUIT and HELLO with arguments end the connection's use too; the next caller is served.
        #expect(try client.send("QUIT") == .status("OK"))
        #expect(try client.send("GET", RedisArgument(keys("after-auth"))).string == "landed")
        try client.send("DEL", RedisArgument(keys("after-auth")))
    }

    @Test("async: AUTH, QUIT and HELLO with arguments are refused on shared connections; inside withConnection they run and the connection is discarded")
    func sessionCommandsOnSharedAsyncConnections() async throws {
        let user = try Self.limitedUser()
        defer { Self.removeUser(user.name) }
        let client = try TestEnvironment.client()
        defer { client.close() }
        try await client.ping()
        for command: [RedisArgument] in [["AUTH", RedisArgument(user.name), RedisArgument(user.password)], ["quit"], ["HELLO", "2", "SETNAME", "x"], ["CLIENT", "SETNAME", "x"]] {
            await #expect(throws: RedisError.self, "\(command)") { _ = try await client.send(command) }
            let error = await #expect(throws: RedisError.self) { try await client.pipeline([["PING"], command]) }
            #expect(error?.code == .invalidArgument)
            #expect(error?.message.contains("withConnection") == true, "\(error?.message ?? "")")
        }
        // Concurrent callers never saw another user nor a closed connection.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<64 {
                group.addTask {
                    if task % 8 == 0 { _ = try? await client.send("QUIT") }
                    let user = try await client.send("ACL", "WHOAMI").string
                    #expect(user == "default")
                }
            }
            try await group.waitForAll()
        }
        // HELLO without arguments only reports: allowed on shared connections.
        #expect(try await client.send("HELLO").array != nil)
        try await client.withConnection { connection in
            try await connection.send(["AUTH", RedisArgument(user.name), RedisArgument(user.password)])
            #expect(try await connection.send(["ACL", "WHOAMI"]).string == user.name)
        }
        try await client.withConnection { connection in
            #expect(try await connection.send(["ACL", "WHOAMI"]).string == "default")
            try await connection.send(["QUIT"])
        }
        let whoami = try await client.withConnection { connection in try await connection.send(["ACL", "WHOAMI"]).string }
        #expect(whoami == "default")
    }
}

/// Hardening: failures say what happened, in words, with the address; and
/// a refused server is not hammered with reconnects.
@Suite("Failure codes and reconnect backoff")
struct FailureTests {
    @Test("a server that stops reading gives writeTimeout, not readTimeout, with the address and the timeout in words", .ownThread)
    func writeTimeoutIsItsOwnCode() throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        let client = try RedisClient(configuration: server.configuration(commandTimeout: .milliseconds(300)))
        defer { client.close() }
        try client.ping()
        server.pause()
        defer { server.resume() }
        // Far more than the two socket buffers hold: the write itself blocks.
        let value = [UInt8](repeating: 120, count: 64 << 20)
        let error = #expect(throws: RedisError.self) { try client.send("SET", "big", .bytes(value)) }
        #expect(error?.code == .writeTimeout)
        #expect(error?.message.contains("127.0.0.1:\(server.port)") == true)
        #expect(error?.message.contains("300 ms") == true)
        #expect(error?.message.contains("Resource temporarily unavailable") == false)
        #expect(error?.isConnectionFatal == true)
    }

    @Test("a reply that does not come gives readTimeout whose message says so in words, with the address", .ownThread)
    func readTimeoutInWords() throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        var configuration = try server.configuration(commandTimeout: .milliseconds(200))
        configuration.retry.onTimeout = false
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        let error = #expect(throws: RedisError.self) { try client.send("DEBUG", "SLEEP", "0.6") }
        #expect(error?.code == .readTimeout)
        #expect(error?.message == "no reply from 127.0.0.1:\(server.port) within 200 ms (commandTimeout); the connection was reset")
    }

    @Test("hiredis failures are classified by what happened, in words with the address: write and read timeouts apart, a refused reply never as I/O", .ownThread, arguments: [
        (REDIS_ERR_IO, "Resource temporarily unavailable", EAGAIN, RedisConnection.Phase.writing, "writeTimeout", "could not write the request to 127.0.0.1:6379 within 250 ms"),
        (REDIS_ERR_IO, "Resource temporarily unavailable", EAGAIN, .reading, "readTimeout", "no reply from 127.0.0.1:6379 within 250 ms"),
        (REDIS_ERR_IO, "Connection timed out", ETIMEDOUT, .connecting, "connectTimeout", "could not connect to 127.0.0.1:6379 within 2 seconds"),
        (REDIS_ERR_IO, "Connection refused", ECONNREFUSED, .connecting, "connectionRefused", "127.0.0.1:6379 refused the connection"),
        (REDIS_ERR_IO, "Connection reset by peer", ECONNRESET, .reading, "connectionClosed", "127.0.0.1:6379 closed the connection"),
        (REDIS_ERR_EOF, "Server closed the connection", 0, .reading, "connectionClosed", "127.0.0.1:6379 closed the connection"),
        (REDIS_ERR_PROTOCOL, "Protocol error, got \"!\" as reply type byte", 0, .reading, "protocolError", "127.0.0.1:6379 sent a reply that cannot be parsed"),
        (REDIS_ERR_OOM, "Out of memory", 0, .reading, "protocolError", "the reply from 127.0.0.1:6379 could not be built"),
        (REDIS_ERR_OTHER, "something else", 0, .reading, "io", "127.0.0.1:6379"),
    ])
    func classification(code: Int32, text: String, errno: Int32, phase: RedisConnection.Phase, expected: String, words: String) {
        let error = RedisConnection.classify(
            hiredisError: code, text: text, errno: errno, during: phase,
            address: .tcp(host: "127.0.0.1", port: 6379), commandTimeout: .milliseconds(250), connectTimeout: .seconds(2)
        )
        #expect(error.code.description == expected)
        #expect(error.message.contains(words), "\(error.message)")
        #expect(!error.message.contains("Resource temporarily unavailable"))
        // Only what may succeed on a fresh connection is transient (and so retried for reads).
        #expect(error.isTransient == (expected != "protocolError"))
    }

    @Test("a malformed array count (*-5) is a protocolError and is not retried", .ownThread)
    func refusedReplyIsNotRetried() throws {
        // Answers every connection's first request with "*-5".
        let peer = try ScriptedPeer(reply: "*-5\r\n", hold: .milliseconds(200))
        let port = peer.port
        var configuration = RedisConfiguration(address: .tcp(host: "127.0.0.1", port: port))
        configuration.commandTimeout = .milliseconds(500)
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        let error = #expect(throws: RedisError.self) { try client.send("GET", "k") }
        #expect(error?.code == .protocolError)
        #expect(error?.message.contains("127.0.0.1:\(port)") == true)
        Thread.sleep(forTimeInterval: 0.3)
        #expect(peer.accepted == 1)
    }

    @Test("a plain server that closes a new connection before any reply (killed, restarting) gets no TLS hint", arguments: Mode.allCases)
    func earlyCloseWithoutTLSHasNoHint(mode: Mode) async throws {
        let peer = try ScriptedPeer(reply: "", hold: .zero)
        var configuration = try RedisConfiguration(url: "redis://127.0.0.1:\(peer.port)/0")
        configuration.retry.onTimeout = false
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        let cache = mode.drive(try RedisCacheAdapter(client: client, keyPrefix: "bctest:early:"))
        let error = await #expect(throws: RedisError.self) { _ = try await cache.get("k", as: Int.self) }
        #expect(error?.code == .connectionClosed, "\(String(describing: error))")
        #expect(error?.message.contains("rediss://") == false, "\(String(describing: error))")
        #expect(RedisConnection.greeting(of: .tcp(host: "127.0.0.1", port: peer.port), within: .seconds(1)) == .other)
    }

    @Test("a server at maxclients refuses async calls as it refuses blocking ones: connectionRefused with the server's words, no TLS hint", arguments: Mode.allCases)
    func maxclientsIsARefusalOnBothAPIs(mode: Mode) async throws {
        let server = try TestRedisServer(extraArguments: ["--maxclients", "2"])
        defer { server.stop() }
        let configuration = try server.configuration(commandTimeout: .seconds(2))
        // The two connections the server allows.
        var hogs: [RedisConnection] = []
        let deadline = ContinuousClock.now + .seconds(5)
        while hogs.count < 2, ContinuousClock.now < deadline {
            if let connection = try? RedisConnection(address: .tcp(host: "127.0.0.1", port: server.port), configuration: configuration),
               (try? connection.send(["PING"])) != nil {
                hogs.append(connection)
            } else {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        #expect(hogs.count == 2)
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        let cache = mode.drive(try RedisCacheAdapter(client: client, keyPrefix: "bctest:maxclients:"))
        // 16 callers at once, 40 calls each, over the reconnect backoff.
        let outcomes = await withTaskGroup(of: [String].self) { group in
            for _ in 0..<16 {
                group.addTask {
                    var outcomes: [String] = []
                    for _ in 0..<40 {
                        do {
                            _ = try await cache.get("k", as: Int.self)
                            outcomes.append("answered")
                        } catch let error as RedisError {
                            let hint = error.message.contains("rediss://") ? " with a TLS hint" : ""
                            let words = error.message.contains("max number of clients") ? "" : " (\(error.message))"
                            outcomes.append("\(error.code)\(hint)\(words)")
                        } catch {
                            outcomes.append("\(error)")
                        }
                        try? await Task.sleep(for: .milliseconds(5))
                    }
                    return outcomes
                }
            }
            return await group.reduce(into: []) { $0 += $1 }
        }
        let wrong = outcomes.filter { $0 != "connectionRefused" }
        #expect(wrong.isEmpty, "\(wrong.count) of \(outcomes.count) calls: \(Set(wrong).prefix(4))")
        for hog in hogs { hog.close() }
    }

    @Test("against a server at maxclients, failed connects back off (dozens, not thousands, per second) and recover once it accepts again", .ownThread)
    func reconnectStormBacksOff() throws {
        let server = try TestRedisServer(extraArguments: ["--maxclients", "1"])
        defer { server.stop() }
        let configuration = try server.configuration(commandTimeout: .seconds(2))
        // The one connection the server allows; retried until the start-up probe's slot is free.
        var hog: RedisConnection?
        let deadline = ContinuousClock.now + .seconds(5)
        while hog == nil, ContinuousClock.now < deadline {
            if let connection = try? RedisConnection(address: .tcp(host: "127.0.0.1", port: server.port), configuration: configuration),
               (try? connection.send(["PING"])) != nil {
                hog = connection
            } else {
                Thread.sleep(forTimeInterval: 0.02)
            }
        }
        let admin = try #require(hog)
        func rejected() throws -> Int {
            let info = try admin.send(["INFO", "stats"]).string ?? ""
            let line = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("rejected_connections:") }
            return Int(line?.split(separator: ":").last ?? "") ?? -1
        }
        let before = try rejected()
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        var failures = 0
        var lastError: RedisError?
        let storm = ContinuousClock.now + .seconds(1)
        while ContinuousClock.now < storm {
            do { try client.send("GET", "k") } catch {
                failures += 1
                lastError = error
            }
        }
        let attempts = try rejected() - before
        #expect(failures > 100)
        #expect(lastError?.code == .connectionRefused)
        #expect(lastError?.message.contains("max number of clients") == true)
        // Before: ~29,000 connects in that second. Backing off from 25 ms to 1 s allows about ten.
        #expect(attempts >= 1 && attempts < 50, "\(attempts) connects in 1 s")

        admin.close()
        var recovered = false
        let recovery = ContinuousClock.now + .seconds(5)
        while !recovered, ContinuousClock.now < recovery {
            if (try? client.send("PING")) == .status("PONG") { recovered = true } else { Thread.sleep(forTimeInterval: 0.01) }
        }
        #expect(recovered)
    }
}
