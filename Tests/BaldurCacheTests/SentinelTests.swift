import BaldurCache
import Foundation
import Testing

/// `redis+sentinel://`: discovery, errors, and failovers on groups of the
/// tests' own (`scripts/sentinel-group.sh`). The contract suite runs
/// through the shared group too (`Provider.redisSentinel`).
@Suite("Sentinel", .serialized)
struct SentinelTests {
    @Test("calls reach the master the sentinels name, with the master's and the sentinels' passwords kept apart", .ownThread)
    func discovery() throws {
        let client = try RedisClient(configuration: TestEnvironment.sentinelConfiguration())
        defer { client.close() }
        let key = RedisArgument(TestKeys()("k"))
        try client.send("SET", key, "v", "EX", "60")
        #expect(try client.send("GET", key) == .bulk(Array("v".utf8)))
        #expect(try client.send("ROLE").array?.first?.string == "master")
        try client.send("DEL", key)

        var wrongSentinelPassword = try TestEnvironment.sentinelConfiguration()
        wrongSentinelPassword.sentinelPassword = "not-it"
        let refused = try RedisClient(configuration: wrongSentinelPassword)
        defer { refused.close() }
        let error = #expect(throws: RedisError.self) { try refused.send("PING") }
        #expect(error?.message.contains("WRONGPASS") == true, "\(String(describing: error))")
        #expect(error?.message.contains("not-it") == false)
    }

    @Test("with every sentinel down the error names each one, within connectTimeout per sentinel", .ownThread)
    func allSentinelsDown() throws {
        // One refuses at once; one accepts the connection (a listen backlog) and never answers.
        let (silent, silentPort) = try boundLoopbackSocket()
        defer { close(silent) }
        #expect(listen(silent, 8) == 0)
        let refusedPort = try freeLoopbackPort()
        var configuration = try RedisConfiguration(url: "redis+sentinel://mymaster@127.0.0.1:\(refusedPort),127.0.0.1:\(silentPort)/0")
        configuration.connectTimeout = .milliseconds(300)
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        let started = ContinuousClock.now
        let error = #expect(throws: RedisError.self) { try client.send("PING") }
        #expect(ContinuousClock.now - started < .seconds(2), "two sentinels at 300 ms each, not more")
        #expect(error?.message.contains("no sentinel named a reachable master 'mymaster'") == true, "\(String(describing: error))")
        #expect(error?.message.contains("127.0.0.1:\(refusedPort)") == true)
        #expect(error?.message.contains("127.0.0.1:\(silentPort)") == true)
        #expect(error?.isConnectionFatal == true)
    }

    @Test("a name no sentinel knows is an error that says so", .ownThread)
    func unknownMaster() throws {
        var configuration = try TestEnvironment.sentinelConfiguration()
        guard case .sentinel(_, let sentinels) = configuration.topology else { return }
        configuration.topology = .sentinel(masterName: "no-such-master", sentinels: sentinels)
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        let error = #expect(throws: RedisError.self) { try client.send("PING") }
        #expect(error?.message.contains("does not know a master named 'no-such-master'") == true, "\(String(describing: error))")
    }

    @Test("SENTINEL FAILOVER under 8 writing tasks: no write is acknowledged by the demoted master after the switch, none acknowledged by the new one is lost, calls recover")
    func failoverUnderLoad() async throws {
        let group = try TestSentinelGroup()
        defer { group.stop() }
        let client = try RedisClient(configuration: group.configuration())
        defer { client.close() }
        let keys = TestKeys()
        // Each write says which server took it: the script returns that server's port.
        let script = "redis.call('RPUSH', KEYS[1], ARGV[1]) return string.match(redis.call('INFO', 'server'), 'tcp_port:(%d+)')"
        let recorder = WriteLog()
        var failoverAt = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for task in 0..<8 {
                tasks.addTask {
                    var counter = 0
                    while await !recorder.done {
                        counter += 1
                        do {
                            let reply = try await client.send("EVAL", RedisArgument(script), 1, RedisArgument(keys("list\(task)")), RedisArgument(counter))
                            // When the caller had the acknowledgement: what a user would time.
                            await recorder.acknowledged(task: task, counter: counter, port: reply.string.flatMap(Int.init) ?? -1, at: .now)
                        } catch let error as RedisError {
                            await recorder.failed(error)
                            try await Task.sleep(for: .milliseconds(20))
                        }
                    }
                }
            }
            // Writes flow, then the failover, then writes flow on the new master.
            while await recorder.count(port: group.masterPort) < 8 * 5 { try await Task.sleep(for: .milliseconds(10)) }
            let sentinel = try group.sentinelClient()
            failoverAt = .now
            try await sentinel.send("SENTINEL", "FAILOVER", "mymaster")
            sentinel.close()
            let deadline = ContinuousClock.now + .seconds(30)
            while await !recorder.everyTaskWrote(to: group.replicaPort, tasks: 8), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            await recorder.finish()
            try await tasks.waitForAll()
        }
        let log = await recorder.snapshot()
        #expect(log.untypedFailures == 0)
        #expect(log.everyTaskWrote(to: group.replicaPort, tasks: 8), "calls recovered on the promoted replica")
        // Per task: once the new master took a write, the old one took none.
        for task in 0..<8 {
            let ports = log.writes.filter { $0.task == task }.sorted { $0.counter < $1.counter }.map(\.port)
            if let switched = ports.firstIndex(of: group.replicaPort) {
                #expect(!ports[switched...].contains(group.masterPort), "task \(task) wrote to the demoted master after the switch")
            }
        }
        // Every write the new master acknowledged is there.
        let newMaster = try group.directClient(port: group.replicaPort)
        defer { newMaster.close() }
        for task in 0..<8 {
            let stored = Set(try await newMaster.send("LRANGE", RedisArgument(keys("list\(task)")), 0, -1).array?.compactMap { $0.string.flatMap(Int.init) } ?? [])
            let acknowledged = log.writes.filter { $0.task == task && $0.port == group.replicaPort }.map(\.counter)
            #expect(acknowledged.allSatisfy(stored.contains), "task \(task) lost writes acknowledged by the new master")
        }
        let first = log.firstWrite(to: group.replicaPort).map { failoverAt.duration(to: $0) }
        let all = log.lastFirstWrite(to: group.replicaPort, tasks: 8).map { failoverAt.duration(to: $0) }
        print("Sentinel FAILOVER: the first write acknowledged by the new master came \(first.map(\.description) ?? "never") after SENTINEL FAILOVER was sent, every task's by \(all.map(\.description) ?? "never"); \(log.failures) calls failed")
    }

    @Test("the master killed: calls fail until the sentinels promote the replica, then succeed there")
    func masterKilled() async throws {
        let group = try TestSentinelGroup()
        defer { group.stop() }
        let client = try RedisClient(configuration: group.configuration(commandTimeout: .seconds(1)))
        defer { client.close() }
        let key = RedisArgument(TestKeys()("k"))
        try await client.send("SET", key, "before")
        // Replicated before the kill, so the promoted replica has it.
        try await client.send("WAIT", 1, 2000)
        let killedAt = ContinuousClock.now
        group.kill(port: group.masterPort)
        var failures = 0
        var recoveredAt: ContinuousClock.Instant?
        while recoveredAt == nil, ContinuousClock.now - killedAt < .seconds(30) {
            do {
                try await client.send("SET", key, "after")
                recoveredAt = .now
            } catch let error as RedisError {
                #expect(error.isConnectionFatal || error.isTransient, "\(error)")
                failures += 1
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        #expect(recoveredAt != nil, "calls succeed again once the replica is promoted")
        #expect(failures > 0, "the kill was seen")
        #expect(try await client.send("ROLE").array?.first?.string == "master")
        // Every sentinel learns the new configuration within a few hello rounds.
        var named = try group.namedMasterPort()
        let deadline = ContinuousClock.now + .seconds(10)
        while named != group.replicaPort, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            named = try group.namedMasterPort()
        }
        #expect(named == group.replicaPort)
        let promoted = try group.directClient(port: group.replicaPort)
        defer { promoted.close() }
        #expect(try await promoted.send("GET", key) == .bulk(Array("after".utf8)))
        print("Sentinel master killed: calls succeeded again \(recoveredAt.map { killedAt.duration(to: $0).description } ?? "never") after the kill (\(failures) failed calls)")
    }

    @Test("the master stalled (SIGSTOP) until the sentinels replace it: calls in flight there end at the switch saying so and reads are answered by the new master; connects under way are given up and their calls sent there, sync and async")
    func callsOnAStalledMasterEndAtTheSwitch() async throws {
        let group = try TestSentinelGroup()
        defer { group.stop() }
        // Far longer than a failover: only the switch can end these calls in time.
        let configuration = try group.configuration(commandTimeout: .seconds(20))
        let keys = TestKeys()
        let kept = RedisArgument(keys("kept"))
        let before = RedisReply.bulk(Array("before".utf8))
        // In flight: two pooled connections and both shared engine connections to the master.
        let inFlight = try RedisClient(configuration: configuration)
        defer { inFlight.close() }
        #expect(configuration.pool.pipelinedConnections == 2)
        try inFlight.withConnection { (_: RedisBlockingConnection) in
            try inFlight.withConnection { (_: RedisBlockingConnection) in }
        }
        try await inFlight.send("SET", kept, "before")
        _ = try await inFlight.send("GET", kept)
        try await inFlight.send("WAIT", 1, 2000)
        // Connecting: the master found, but no connection of the path used yet.
        let connectingAsync = try RedisClient(configuration: configuration)
        defer { connectingAsync.close() }
        try blockingSend(connectingAsync, ["PING"])
        let connectingSync = try RedisClient(configuration: configuration)
        defer { connectingSync.close() }
        try await connectingSync.send("PING")

        group.kill(port: group.masterPort, signal: SIGSTOP)
        defer { group.kill(port: group.masterPort, signal: SIGCONT) }
        let stalledAt = ContinuousClock.now
        // Sent on a connection to the stalled master (or connecting to it), then no answer.
        async let syncWrite = Self.onThread { inFlight.sendForResult(["SET", RedisArgument(keys("sync")), "x"]) }
        async let syncRead = Self.onThread { inFlight.sendForResult(["GET", kept]) }
        async let syncConnecting = Self.onThread { connectingSync.sendForResult(["SET", RedisArgument(keys("sync-connecting")), "x"]) }
        async let asyncWrite = inFlight.sendForResult(["SET", RedisArgument(keys("async")), "y"])
        async let asyncRead = inFlight.sendForResult(["GET", kept])
        async let asyncConnecting = connectingAsync.sendForResult(["SET", RedisArgument(keys("async-connecting")), "y"])
        let outcomes = await (syncWrite, syncRead, syncConnecting, asyncWrite, asyncRead, asyncConnecting)
        let endedAt = ContinuousClock.now

        let moved = "moved from 127.0.0.1:\(group.masterPort) to 127.0.0.1:\(group.replicaPort)"
        for (path, write) in [("sync", outcomes.0), ("async", outcomes.3)] {
            guard case .failure(let error) = write else {
                Issue.record("a write in flight on the stalled master must not succeed (\(path)): \(write)")
                continue
            }
            #expect(error.code == .connectionClosed, "\(error)")
            #expect(error.message.contains(moved) && error.message.contains("may or may not have run"), "\(error)")
        }
        #expect(try outcomes.1.get() == before, "read again on the new master")
        #expect(try outcomes.4.get() == before, "read again on the new master")
        #expect(try outcomes.2.get() == .status("OK"), "nothing was sent to the old master, so it went to the new one")
        #expect(try outcomes.5.get() == .status("OK"), "nothing was sent to the old master, so it went to the new one")
        #expect(try await inFlight.send("ROLE").array?.first?.string == "master")
        let promoted = try group.directClient(port: group.replicaPort)
        defer { promoted.close() }
        #expect(try await promoted.send("GET", RedisArgument(keys("sync-connecting"))) == .bulk(Array("x".utf8)))
        print("Sentinel master stalled: calls in flight there ended \(stalledAt.duration(to: endedAt)) after SIGSTOP (commandTimeout 20 s)")
    }

    /// Runs `body` on a thread of its own: a blocking call must not hold one of the cooperative pool's.
    private static func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: body()) }.start()
        }
    }

    @Test("rediss+sentinel://: sentinels, master and replica over TLS; a failover is followed on the sync and the async path")
    func overTLS() async throws {
        let group = try TestSentinelGroup(tls: true)
        defer { group.stop() }
        let client = try RedisClient(configuration: group.configuration())
        defer { client.close() }
        let key = RedisArgument(TestKeys()("k"))
        try blockingSend(client, ["SET", key, "sync-before"])
        try await client.send("SET", key, "async-before")
        let sentinel = try group.sentinelClient()
        try await sentinel.send("SENTINEL", "FAILOVER", "mymaster")
        sentinel.close()
        let deadline = ContinuousClock.now + .seconds(30)
        var movedSync = false, movedAsync = false
        while !(movedSync && movedAsync), ContinuousClock.now < deadline {
            if !movedSync, (try? blockingSend(client, ["SET", key, "sync-after"])) != nil,
               (try? blockingSend(client, ["INFO", "server"]))?.string?.contains("tcp_port:\(group.replicaPort)") == true {
                movedSync = true
            }
            if !movedAsync, (try? await client.send("SET", key, "async-after")) != nil,
               (try? await client.send("INFO", "server"))?.string?.contains("tcp_port:\(group.replicaPort)") == true {
                movedAsync = true
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(movedSync && movedAsync, "both paths write to the promoted replica")
    }

    @Test("the CLI exits cleanly while other threads are inside TLS (OpenSSL's atexit cleanup is off)", .ownThread)
    func exitDuringTLS() throws {
        // A Sentinel client over TLS has a watcher thread polling the
        // sentinels; with OpenSSL's atexit cleanup a process exiting under
        // it crashed in about one run in eight.
        let group = try TestSentinelGroup(tls: true)
        defer { group.stop() }
        let prefix = "bctest:\(UUID().uuidString):"
        func run(_ arguments: [String]) throws -> (status: Int32, signalled: Bool) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try TestEnvironment.value("BALDUR_TEST_CLI"))
            process.arguments = arguments + ["--url", group.url, "--prefix", prefix]
            var environment = ProcessInfo.processInfo.environment
            environment["BALDUR_REDIS_PASSWORD"] = group.masterPassword
            environment["BALDUR_REDIS_SENTINEL_PASSWORD"] = group.sentinelPassword
            process.environment = environment
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            return (process.terminationStatus, process.terminationReason == .uncaughtSignal)
        }
        #expect(try run(["set", "k", "1"]).status == 0)
        for attempt in 0..<20 {
            let outcome = try run(["get", "k"])
            #expect(outcome.status == 0 && !outcome.signalled, "run \(attempt) ended with \(outcome)")
        }
    }

    @Test("Python Baldur on redis+sentinel:// and BaldurCache read each other's values and respect each other's locks", .ownThread)
    func pythonInterop() throws {
        let prefix = "bctest:\(UUID().uuidString):"
        let cache = try RedisCacheAdapter(client: RedisClient(configuration: TestEnvironment.sentinelConfiguration()), keyPrefix: prefix)
        defer { _ = try? cache.flushAll(); cache.close() }
        let environment = [
            "BALDUR_PEER_URL": try TestEnvironment.value("BALDUR_TEST_SENTINEL_URL"),
            "BALDUR_REDIS_PASSWORD": try TestEnvironment.value("BALDUR_TEST_SENTINEL_MASTER_PASSWORD"),
            "BALDUR_REDIS_SENTINEL_PASSWORD": try TestEnvironment.value("BALDUR_TEST_SENTINEL_PASSWORD"),
        ]
        try expectPythonInterop(cache, prefix: prefix, environment: environment)
    }
}

/// Python Baldur (through `environment`'s URL) and `cache` read each
/// other's values and respect each other's locks, under `prefix`.
func expectPythonInterop(_ cache: RedisCacheAdapter, prefix: String, environment: [String: String]) throws {
    let p = JSONValue.string(prefix)
    try cache.set("from-swift", ["side": "swift"] as JSONValue)
    let python = try PythonPeer.run([
        ["op": "get", "prefix": p, "key": "from-swift"],
        ["op": "set", "prefix": p, "key": "from-python", "value": ["side": "python"]],
        ["op": "lock_acquire", "prefix": p, "name": "job", "timeout_ms": 10000],
    ], environment: environment)
    #expect(python[0] == ["side": "swift"])
    #expect(try cache.get("from-python") == ["side": "python"])
    #expect(python[2]["acquired"] == true)
    #expect(try !cache.getLock("job", timeout: .seconds(10)).acquire(blocking: false))
    #expect(try PythonPeer.run([["op": "lock_release_as", "prefix": p, "name": "job", "owner": python[2]["owner"]!]],
                               environment: environment) == [true])
    try cache.getLock("job", timeout: .seconds(10)).withLock { () throws in
        let seen = try PythonPeer.run([["op": "lock_acquire", "prefix": p, "name": "job", "timeout_ms": 10000]], environment: environment)
        #expect(seen[0]["acquired"] == false)
    }
}

extension RedisClient {
    /// The synchronous `send`, its outcome as a value.
    fileprivate func sendForResult(_ arguments: [RedisArgument]) -> Result<RedisReply, RedisError> {
        Result { () throws(RedisError) in try send(arguments) }
    }

    /// The async `send`, its outcome as a value.
    fileprivate func sendForResult(_ arguments: [RedisArgument]) async -> Result<RedisReply, RedisError> {
        do { return .success(try await send(arguments)) } catch let error as RedisError { return .failure(error) } catch {
            return .failure(RedisError(.io, "not a RedisError: \(error)"))
        }
    }
}

/// The synchronous `send`, which async code would not pick by itself.
@discardableResult
private func blockingSend(_ client: RedisClient, _ arguments: [RedisArgument]) throws -> RedisReply {
    try client.send(arguments)
}

/// What the failover test's writers saw.
private actor WriteLog {
    struct Write: Sendable {
        let task: Int
        let counter: Int
        let port: Int
        let at: ContinuousClock.Instant
    }

    struct Snapshot: Sendable {
        let writes: [Write]
        let failures: Int
        let untypedFailures: Int

        func everyTaskWrote(to port: Int, tasks: Int) -> Bool {
            Set(writes.filter { $0.port == port }.map(\.task)).count == tasks
        }

        func firstWrite(to port: Int) -> ContinuousClock.Instant? {
            writes.filter { $0.port == port }.map(\.at).min()
        }

        /// When the last task to reach `port` first reached it.
        func lastFirstWrite(to port: Int, tasks: Int) -> ContinuousClock.Instant? {
            let firsts = (0..<tasks).compactMap { task in writes.filter { $0.task == task && $0.port == port }.map(\.at).min() }
            return firsts.count == tasks ? firsts.max() : nil
        }
    }

    private var writes: [Write] = []
    private var failures = 0
    private var untypedFailures = 0
    private(set) var done = false

    func acknowledged(task: Int, counter: Int, port: Int, at: ContinuousClock.Instant) {
        writes.append(Write(task: task, counter: counter, port: port, at: at))
    }

    func failed(_ error: RedisError) {
        failures += 1
        if !(error.isConnectionFatal || error.isTransient || error.code == .closed || error.prefix == "READONLY") { untypedFailures += 1 }
    }

    func count(port: Int) -> Int { writes.filter { $0.port == port }.count }

    func everyTaskWrote(to port: Int, tasks: Int) -> Bool { snapshot().everyTaskWrote(to: port, tasks: tasks) }

    func finish() { done = true }

    func snapshot() -> Snapshot { Snapshot(writes: writes, failures: failures, untypedFailures: untypedFailures) }
}
