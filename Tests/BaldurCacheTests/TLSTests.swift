@testable import BaldurCache
import Foundation
import Testing

/// `rediss://` against the TLS servers `scripts/run-tests.sh` started (and
/// some of the tests' own, with certificates made to fail): what connects,
/// what is refused, and in which words. The contract suite runs over TLS
/// too (`Provider.redisTLS`).
@Suite("TLS")
struct TLSTests {
    /// Connecting with `url` fails; returns the error.
    private func refusal(_ url: String, connectTimeout: Duration = .seconds(2)) throws -> RedisError {
        var configuration = try RedisConfiguration(url: url)
        configuration.connectTimeout = connectTimeout
        guard case .standalone(let address) = configuration.topology else { throw RedisError(.invalidArgument, "not standalone") }
        do {
            let connection = try RedisConnection(address: address, configuration: configuration)
            try connection.send(["PING"])
        } catch {
            return error
        }
        Issue.record("connecting with \(url) succeeded")
        return RedisError(.invalidArgument, "no failure")
    }

    private func pong(_ url: String) throws -> RedisReply {
        let client = try RedisClient(configuration: RedisConfiguration(url: url))
        defer { client.close() }
        return try client.send("PING")
    }

    @Test("a 1 MiB value, a 1,000-command pipeline and a lock round-trip over TLS on the sync path", .ownThread)
    func syncRoundTrips() throws {
        let keys = TestKeys()
        let cache = try RedisCacheAdapter(url: TestEnvironment.tlsURL(), keyPrefix: keys.prefix)
        defer { _ = try? cache.flushAll(); cache.close() }
        let big = String(repeating: "0123456789abcdef", count: 65_536)
        try cache.set("big", JSONValue.string(big))
        #expect(try cache.get("big") == JSONValue.string(big))
        let commands: [[RedisArgument]] = (0..<1000).map { ["SET", RedisArgument(keys("p\($0)")), RedisArgument("\($0)")] }
        _ = try cache.rawClient.pipeline(commands)
        let values = try cache.rawClient.pipeline((0..<1000).map { ["GET", RedisArgument(keys("p\($0)"))] })
        #expect(values.map(\.string) == (0..<1000).map { "\($0)" })
        _ = try cache.rawClient.pipeline((0..<1000).map { ["DEL", RedisArgument(keys("p\($0)"))] })
        let ran = try cache.getLock("job", timeout: .seconds(10)).withLock { () throws -> Bool in
            try !cache.getLock("job", timeout: .seconds(10)).acquire(blocking: false)
        }
        #expect(ran)
        #expect(try !cache.getLock("job").locked())
    }

    @Test("a pooled TLS connection is reused after an idle pause, and replaced without an error after CLIENT KILL", .ownThread)
    func pooledReuse() throws {
        var configuration = try RedisConfiguration(url: TestEnvironment.tlsURL())
        configuration.pool.maxConnections = 1
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        let first = try client.send("CLIENT", "ID").integer
        Thread.sleep(forTimeInterval: 0.1)
        let second = try client.send("CLIENT", "ID").integer
        #expect(first != nil && first == second)
        // Killed while idle: the pool sees the end of the TLS stream and opens another.
        let admin = try RedisClient(url: TestEnvironment.tlsURL())
        defer { admin.close() }
        try admin.send("CLIENT", "KILL", "ID", RedisArgument(first ?? 0))
        Thread.sleep(forTimeInterval: 0.1)
        let third = try client.send("CLIENT", "ID").integer
        #expect(third != nil && third != first)
    }

    @Test("a certificate from a CA not trusted is refused as an unknown CA, with a CA file and with the system store", .ownThread)
    func unknownCA() throws {
        let other = try refusal(TestEnvironment.tlsURL().replacingOccurrences(of: "/ca.crt", with: "/other-ca.crt"))
        #expect(other.code == .tls)
        #expect(other.message.contains("unknown CA") && other.message.contains("other-ca.crt"), "\(other)")
        let system = try refusal("rediss://localhost:\(try TestEnvironment.value("BALDUR_TEST_REDIS_TLS_PORT"))/0")
        #expect(system.code == .tls)
        #expect(system.message.contains("unknown CA") && system.message.contains("system CA store"), "\(system)")
    }

    @Test("a certificate for another name is refused as a host name mismatch; ssl_check_hostname=false and ssl_cert_reqs=none accept it", .ownThread)
    func hostNameMismatch() throws {
        let server = try TestRedisServer(tlsCertificate: "wrong-name")
        let byName = try refusal(server.url)
        #expect(byName.code == .tls)
        #expect(byName.message.contains("not for 'localhost'"), "\(byName)")
        let byAddress = try refusal(server.url.replacingOccurrences(of: "localhost", with: "127.0.0.1"))
        #expect(byAddress.message.contains("not for '127.0.0.1'"), "\(byAddress)")
        #expect(try pong(server.url + "&ssl_check_hostname=false") == .status("PONG"))
        #expect(try pong(server.url + "&ssl_cert_reqs=none") == .status("PONG"))
        // The right certificate is accepted by name and by IP address.
        #expect(try pong(TestEnvironment.tlsURL()) == .status("PONG"))
        #expect(try pong(TestEnvironment.tlsURL(host: "127.0.0.1")) == .status("PONG"))
    }

    @Test("an expired certificate is refused in those words", .ownThread)
    func expiredCertificate() throws {
        let server = try TestRedisServer(tlsCertificate: "expired")
        let error = try refusal(server.url)
        #expect(error.code == .tls)
        #expect(error.message.contains("expired"), "\(error)")
        #expect(!error.isTransient)
    }

    @Test("a server that requires a client certificate refuses a connection without one at connect, and accepts ours", .ownThread)
    func mutualTLS() throws {
        let missing = try refusal(TestEnvironment.mutualTLSURL())
        #expect(missing.code == .tls)
        #expect(missing.message.contains("demanded a client certificate"), "\(missing)")
        let withCertificate = try TestEnvironment.mutualTLSURL(
            query: "&ssl_certfile=\(try TestEnvironment.tlsFile("client.crt"))&ssl_keyfile=\(try TestEnvironment.tlsFile("client.key"))")
        let cache = try RedisCacheAdapter(url: withCertificate, keyPrefix: TestKeys().prefix)
        defer { _ = try? cache.flushAll(); cache.close() }
        try cache.set("k", ["mutual": true] as JSONValue)
        #expect(try cache.get("k") == ["mutual": true])
        // A key that does not belong to the certificate is a configuration error naming the files.
        let mismatched = try TestEnvironment.mutualTLSURL(
            query: "&ssl_certfile=\(try TestEnvironment.tlsFile("client.crt"))&ssl_keyfile=\(try TestEnvironment.tlsFile("server.key"))")
        let error = try refusal(mismatched)
        #expect(error.code == .invalidConfiguration)
        #expect(error.message.contains("ssl_keyfile") && error.message.contains("server.key"), "\(error)")
        #expect(!error.message.contains("PRIVATE KEY"))
    }

    @Test("a CA file that does not exist is a configuration error naming it", .ownThread)
    func missingCAFile() throws {
        let error = try refusal(TestEnvironment.tlsURL().replacingOccurrences(of: "/ca.crt", with: "/no-such-ca.crt"))
        #expect(error.code == .invalidConfiguration)
        #expect(error.message.contains("no-such-ca.crt"), "\(error)")
    }

    @Test("rediss:// to a plain server fails at connectTimeout saying it may not be TLS; redis:// to a TLS server fails saying to use rediss://", .ownThread)
    func wrongScheme() throws {
        let plain = try TestEnvironment.url().replacingOccurrences(of: "redis://", with: "rediss://")
        let started = ContinuousClock.now
        let toPlain = try refusal(plain, connectTimeout: .milliseconds(300))
        #expect(ContinuousClock.now - started < .seconds(5))
        // Either the server waits for a line (the handshake times out) or
        // it answers in plain RESP: both say the server is not TLS.
        #expect(toPlain.code == .connectTimeout || toPlain.code == .tls, "\(toPlain)")
        #expect(toPlain.message.contains("plain redis:// server"), "\(toPlain)")
        let tlsPort = try TestEnvironment.value("BALDUR_TEST_REDIS_TLS_PORT")
        let toTLS = try refusal("redis://127.0.0.1:\(tlsPort)/0")
        #expect(toTLS.code == .connectionClosed, "\(toTLS)")
        #expect(toTLS.message.contains("rediss://"), "\(toTLS)")
    }

    @Test("a handshake the server never answers ends at connectTimeout", .ownThread)
    func handshakeTimeout() throws {
        // A socket that listens but never accepts: TCP connects, TLS never answers.
        let (fd, port) = try boundLoopbackSocket()
        defer { close(fd) }
        #expect(listen(fd, 8) == 0)
        let started = ContinuousClock.now
        let error = try refusal("rediss://127.0.0.1:\(port)/0?ssl_cert_reqs=none", connectTimeout: .milliseconds(300))
        #expect(error.code == .connectTimeout, "\(error)")
        #expect(error.message.contains("TLS handshake"), "\(error)")
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test("a TLS server killed and restarted: calls fail with typed errors, then succeed again on the sync path", .ownThread)
    func syncRestart() throws {
        let server = try TestRedisServer(tlsCertificate: "server")
        var configuration = try server.configuration(commandTimeout: .seconds(2))
        configuration.pool.maxConnections = 4
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        let key = TestKeys()("k")
        try client.send("SET", RedisArgument(key), "1")
        server.kill()
        #expect { try client.send("GET", RedisArgument(key)) } throws: { ($0 as? RedisError)?.isConnectionFatal == true }
        try server.start()
        var recovered = false
        for attempt in 0..<50 where !recovered {
            do {
                try client.send("SET", RedisArgument(key), RedisArgument("after-\(attempt)"))
                #expect(try client.send("GET", RedisArgument(key)) == .bulk(Array("after-\(attempt)".utf8)))
                recovered = true
            } catch {
                #expect(error.isConnectionFatal, "\(error)")
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
        #expect(recovered)
    }

    @Test("Python Baldur over rediss:// and BaldurCache read each other's values and respect each other's locks on the TLS server", .ownThread)
    func pythonInterop() throws {
        let prefix = "bctest:\(UUID().uuidString):"
        let p = JSONValue.string(prefix)
        let url = try TestEnvironment.tlsURL()
        let cache = try RedisCacheAdapter(url: url, keyPrefix: prefix)
        defer { _ = try? cache.flushAll(); cache.close() }
        try cache.set("from-swift", ["side": "swift", "n": 1] as JSONValue)
        let python = try PythonPeer.run([
            ["op": "get", "prefix": p, "key": "from-swift"],
            ["op": "set", "prefix": p, "key": "from-python", "value": ["side": "python", "n": 2]],
            ["op": "raw_get", "full_key": .string(prefix + "from-swift")],
            ["op": "lock_acquire", "prefix": p, "name": "job", "timeout_ms": 10000],
        ], environment: ["BALDUR_PEER_URL": url])
        #expect(python[0] == ["side": "swift", "n": 1])
        #expect(python[2].stringValue?.contains("swift") == true)
        #expect(try cache.get("from-python") == ["side": "python", "n": 2])
        #expect(python[3]["acquired"] == true)
        #expect(try !cache.getLock("job", timeout: .seconds(10)).acquire(blocking: false))
        #expect(try PythonPeer.run([["op": "lock_release_as", "prefix": p, "name": "job", "owner": python[3]["owner"]!]],
                                   environment: ["BALDUR_PEER_URL": url]) == [true])
        try cache.getLock("job", timeout: .seconds(10)).withLock { () throws in
            let seen = try PythonPeer.run([["op": "lock_acquire", "prefix": p, "name": "job", "timeout_ms": 10000]],
                                          environment: ["BALDUR_PEER_URL": url])
            #expect(seen[0]["acquired"] == false)
        }
    }

    @Test("the CLI connects with --url rediss:// and the BALDUR_REDIS_SSL_* environment", .ownThread)
    func cli() throws {
        let port = try TestEnvironment.value("BALDUR_TEST_REDIS_TLS_PORT")
        let prefix = "bctest:\(UUID().uuidString):"
        let viaQuery = try CLI(url: TestEnvironment.tlsURL(), prefix: prefix)
        defer { _ = try? viaQuery.run("flush", "--yes") }
        #expect(try viaQuery.run("set", "k", #"{"tls":true}"#).status == 0)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try TestEnvironment.value("BALDUR_TEST_CLI"))
        process.arguments = ["get", "k", "--prefix", prefix]
        var environment = ProcessInfo.processInfo.environment
        environment["BALDUR_REDIS_URL"] = "rediss://localhost:\(port)/0"
        environment["BALDUR_REDIS_SSL_CA_CERTS"] = try TestEnvironment.tlsFile("ca.crt")
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let printed = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(try JSONValue(parsing: Array(printed)) == ["tls": true])
        let refused = try CLI(url: TestEnvironment.tlsURL().replacingOccurrences(of: "/ca.crt", with: "/other-ca.crt"), prefix: prefix).run("get", "k")
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("unknown CA"))
    }
}

/// The async engine over TLS: the event loop reads and writes through
/// `SSL_read`/`SSL_write`.
@Suite("TLS, async")
struct AsyncTLSTests {
    @Test("2,000 concurrent tasks each read back their own value over TLS, 64 KiB values among them")
    func concurrentRoundTrips() async throws {
        let keys = TestKeys()
        let client = try RedisClient(configuration: RedisConfiguration(url: TestEnvironment.tlsURL()))
        defer { client.close() }
        let mismatches = try await withThrowingTaskGroup(of: Int.self) { group in
            for task in 0..<2000 {
                group.addTask {
                    let value = task % 50 == 0 ? String(repeating: "v\(task)-", count: 8192) : "v\(task)"
                    try await client.send(["SET", RedisArgument(keys("t\(task)")), RedisArgument(value)])
                    let reply = try await client.send(["GET", RedisArgument(keys("t\(task)"))])
                    return reply.string == value ? 0 : 1
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(mismatches == 0)
        _ = try await client.pipeline((0..<2000).map { ["DEL", RedisArgument(keys("t\($0)"))] })
    }

    @Test("a TLS server killed and restarted under 8 writing tasks: no crossed reply, typed errors, then recovery")
    func restartUnderLoad() async throws {
        let server = try TestRedisServer(tlsCertificate: "server")
        var configuration = try server.configuration(commandTimeout: .seconds(2))
        configuration.pool.maxConnections = 16
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        let keys = TestKeys()
        let phase = Phase()
        let outcomes = try await withThrowingTaskGroup(of: Outcome.self) { group in
            for task in 0..<8 {
                group.addTask {
                    var outcome = Outcome()
                    var counter = 0
                    while await phase.successesAfterRestart(task) < 50 {
                        counter += 1
                        let key = RedisArgument(keys("w\(task)"))
                        do {
                            try await client.send(["SET", key, RedisArgument("\(task):\(counter)")])
                            let read = try await client.send(["GET", key])
                            // After a restart the key is gone (no persistence); anything else must be ours.
                            if let text = read.string, text != "\(task):\(counter)" { outcome.crossed += 1 }
                            outcome.succeeded += 1
                            await phase.succeeded(task)
                        } catch let error as RedisError {
                            if !error.isConnectionFatal { outcome.untyped += 1 }
                            outcome.failed += 1
                            try await Task.sleep(for: .milliseconds(20))
                        }
                    }
                    return outcome
                }
            }
            // Every task is writing before the kill.
            while await phase.successesBeforeRestart < 8 * 10 { try await Task.sleep(for: .milliseconds(10)) }
            server.kill()
            try await Task.sleep(for: .milliseconds(300))
            try server.start()
            await phase.restarted()
            var total = Outcome()
            for try await outcome in group {
                total.succeeded += outcome.succeeded
                total.failed += outcome.failed
                total.crossed += outcome.crossed
                total.untyped += outcome.untyped
            }
            return total
        }
        #expect(outcomes.crossed == 0)
        #expect(outcomes.untyped == 0)
        #expect(outcomes.failed > 0, "the kill was seen")
        #expect(outcomes.succeeded >= 8 * 60)
    }

    private struct Outcome {
        var succeeded = 0, failed = 0, crossed = 0, untyped = 0
    }

    /// Counts each task's successes once the server is back.
    private actor Phase {
        private var isRestarted = false
        private var after: [Int: Int] = [:]
        private(set) var successesBeforeRestart = 0
        func restarted() { isRestarted = true }
        func succeeded(_ task: Int) {
            if isRestarted { after[task, default: 0] += 1 } else { successesBeforeRestart += 1 }
        }
        func successesAfterRestart(_ task: Int) -> Int { after[task, default: 0] }
    }
}
