@testable import BaldurCache
import Foundation
import Synchronization
import Testing

/// `redis+cluster://`: routing, splitting, redirects and failover, on the
/// shared cluster and on clusters of the tests' own (`scripts/cluster.sh`).
/// The contract suite runs on the shared cluster too (`Provider.redisCluster`).
@Suite("Cluster", .serialized)
struct ClusterTests {
    static func sharedURL() throws -> String { try TestEnvironment.value("BALDUR_TEST_CLUSTER_URL") }

    /// The shared cluster's node ports, from its seeds.
    static func sharedPorts() throws -> [Int] {
        let url = try sharedURL()
        return url.dropFirst("redis+cluster://".count).split(separator: ",").compactMap { $0.split(separator: ":").last.flatMap { Int($0) } }
    }

    @Test("slots: CRC16 as Redis computes it, hash tags, and lock companion keys in the lock key's slot", .ownThread)
    func slots() throws {
        let node = try TestCluster.nodeClient(port: Self.sharedPorts()[0])
        defer { node.close() }
        #expect(Array("123456789".utf8).withUnsafeBytes { ClusterSlot.crc16($0) } == 0x31C3)
        let keys = ["foo", "bar", "{user1000}.following", "{user1000}.followers", "foo{}{bar}", "foo{{bar}}zap", "foo{bar}{zap}",
                    "héllo", "", "baldur:lock:job", "a}b", "{}", "x{y"]
        for key in keys {
            #expect(ClusterSlot.of(key) == Int(try node.send("CLUSTER", "KEYSLOT", RedisArgument(key)).integer ?? -1), "\(key)")
        }
        #expect(ClusterSlot.of("{user1000}.following") == ClusterSlot.of("{user1000}.followers"))
        // The lock's signal list and fence counter hash with the lock key.
        for key in ["baldur:lock:job", "baldur:{orders}:lock", "a}b", "x{}y}", "{}"] {
            for suffix in [":signal", ":fence"] {
                let companion = ClusterSlot.companion(of: key, suffix: suffix)
                #expect(ClusterSlot.of(companion) == ClusterSlot.of(key), "\(companion)")
                #expect(Int(try node.send("CLUSTER", "KEYSLOT", RedisArgument(companion)).integer ?? -1) == ClusterSlot.of(key))
            }
        }
        #expect(ClusterSlot.companion(of: "baldur:lock:job", suffix: ":signal") == "{baldur:lock:job}:signal")
        #expect(ClusterSlot.companion(of: "baldur:{orders}:lock", suffix: ":fence") == "baldur:{orders}:lock:fence")
        #expect(RedisLockStore.signalKey("baldur:lock:job") == "{baldur:lock:job}:signal")
    }

    @Test("keys spread over all three masters, each stored on the master of its slot", arguments: Mode.allCases)
    func spread(mode: Mode) async throws {
        let prefix = "bctest:\(UUID().uuidString):"
        let adapter = try RedisCacheAdapter(url: Self.sharedURL(), keyPrefix: prefix)
        let cache = mode.drive(adapter)
        defer { _ = try? adapter.flushAll(); adapter.close() }
        let names = (0..<300).map { "spread-\($0)" }
        try await cache.mset(Dictionary(uniqueKeysWithValues: names.map { ($0, JSONValue.string($0)) }), ttl: .seconds(60))
        let nodes = try ClusterNodes(asking: Self.sharedPorts()[0])
        var owners = Set<Int>()
        for name in names {
            let owner = try #require(nodes.master(of: ClusterSlot.of(prefix + name)))
            let direct = try TestCluster.nodeClient(port: owner.port)
            defer { direct.close() }
            #expect(try directGet(direct, prefix + name) == .bulk(Array("\"\(name)\"".utf8)))
            owners.insert(owner.port)
        }
        #expect(owners.count == 3)
        #expect(Set(try await cache.keys()) == Set(names))
        #expect(try await cache.flushAll() == 300)
    }

    @Test("MGET, MSET and DEL of 1,000 keys across slots: split per node, values back in key order", arguments: Mode.allCases)
    func bulkAcrossSlots(mode: Mode) async throws {
        let client = try RedisClient(url: Self.sharedURL())
        defer { client.close() }
        let keys = TestKeys()
        let names = (0..<1000).map { RedisArgument(keys("bulk-\($0)")) }
        var mset: [RedisArgument] = ["MSET"]
        for (index, name) in names.enumerated() { mset += [name, RedisArgument(index)] }
        let missing = RedisArgument(keys("never-written"))
        let mget: [RedisArgument] = ["MGET"] + names.prefix(500) + [missing] + names.dropFirst(500)
        let expected: [RedisReply] = (0..<500).map { .bulk(Array(String($0).utf8)) } + [.null] + (500..<1000).map { .bulk(Array(String($0).utf8)) }
        switch mode {
        case .sync:
            // A key without its value goes whole to one node, which refuses it
            // (CROSSSLOT here): a server error, not a silently shorter MSET.
            let odd = #expect(throws: RedisError.self) { try blockingSend(client, Array(mset.dropLast())) }
            #expect(odd?.code == .server, "\(String(describing: odd))")
            #expect(try blockingSend(client, ["EXISTS", names[0]]) == .integer(0))
            #expect(try blockingSend(client, mset) == .status("OK"))
            #expect(try blockingSend(client, mget) == .array(expected))
            #expect(try blockingSend(client, ["EXISTS"] + names + [missing]) == .integer(1000))
            #expect(try blockingSend(client, ["DEL"] + names + [missing]) == .integer(1000))
        case .async:
            #expect(try await client.send(mset) == .status("OK"))
            #expect(try await client.send(mget) == .array(expected))
            #expect(try await client.send(["EXISTS"] + names + [missing]) == .integer(1000))
            #expect(try await client.send(["DEL"] + names + [missing]) == .integer(1000))
        }
        // The adapter's bulk calls are the same commands.
        try await withProvider(.redisCluster, mode) { cache in
            let values = Dictionary(uniqueKeysWithValues: (0..<1000).map { ("k\($0)", JSONValue.int(Int64($0))) })
            try await cache.mset(values, ttl: nil)
            #expect(try await cache.mget(Array(values.keys) + ["absent"]) == values)
            try await cache.mset(values.mapValues { JSONValue.int($0.intValue! + 1) }, ttl: .seconds(60))
            #expect(try await cache.mget(["k0", "k999"]) == ["k0": .int(1), "k999": .int(1000)])
            #expect(try await cache.mdelete(Array(values.keys) + ["absent"]) == 1000)
        }
    }

    @Test("MGET across slots answers a key of another type as one server does (nil), alone in its slot or not", arguments: Mode.allCases)
    func mgetOfOtherTypesAcrossSlots(mode: Mode) async throws {
        let client = try RedisClient(url: Self.sharedURL())
        defer { client.close() }
        let keys = TestKeys()
        // A hash alone in its slot (its part is sent as GET), a list beside a
        // string in one tagged slot (a part of two keys), strings elsewhere.
        let hash = RedisArgument(keys("hash")), list = RedisArgument(keys("{tag}list")), tagged = RedisArgument(keys("{tag}string"))
        let strings = (0..<20).map { RedisArgument(keys("string-\($0)")) }
        let setup: [[RedisArgument]] = [["HSET", hash, "f", "v"], ["RPUSH", list, "x"], ["SET", tagged, "t"]] + strings.map { ["SET", $0, $0] }
        let mget: [RedisArgument] = ["MGET", hash] + strings.prefix(10) + [list, tagged] + strings.dropFirst(10)
        let expected: [RedisReply] = [.null] + strings.prefix(10).map { .bulk($0.bytes) } + [.null, .bulk(Array("t".utf8))] + strings.dropFirst(10).map { .bulk($0.bytes) }
        switch mode {
        case .sync:
            _ = try blockingPipeline(client, setup)
            #expect(try blockingSend(client, mget) == .array(expected))
            #expect(try blockingSend(client, ["MGET", hash]) == .array([.null]))
            _ = try blockingSend(client, ["DEL", hash, list, tagged] + strings)
        case .async:
            _ = try await client.pipeline(setup)
            #expect(try await client.send(mget) == .array(expected))
            #expect(try await client.send(["MGET", hash]) == .array([.null]))
            _ = try await client.send(["DEL", hash, list, tagged] + strings)
        }
    }

    @Test("a blocking MGET over every node after the nodes dropped their clients (CLIENT KILL): answered on fresh connections", .ownThread)
    func blockingMgetAfterTheNodesDroppedTheirClients() throws {
        let url = try Self.sharedURL()
        var configuration = try RedisConfiguration(url: url)
        configuration.pool.maxConnections = 1
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        let keys = TestKeys()
        let names = (0..<60).map { RedisArgument(keys("dropped-\($0)")) }
        var mset: [RedisArgument] = ["MSET"]
        for name in names { mset += [name, name] }
        #expect(try blockingSend(client, mset) == .status("OK"))
        let expected = RedisReply.array(names.map { .bulk($0.bytes) })
        #expect(try blockingSend(client, ["MGET"] + names) == expected)
        for port in try Self.sharedPorts() {
            let admin = try RedisClient(url: "redis://127.0.0.1:\(port)/0")
            defer { admin.close() }
            _ = try blockingSend(admin, ["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
        }
        for _ in 0..<3 { #expect(try blockingSend(client, ["MGET"] + names) == expected) }
        _ = try blockingSend(client, ["DEL"] + names)
    }

    @Test("a blocking MGET with one node stalled (SIGSTOP): a typed timeout, the other nodes' replies all read, none crossed after", .ownThread)
    func blockingMgetWithOneNodeStalled() throws {
        let cluster = try TestCluster()
        defer { cluster.stop() }
        var configuration = try cluster.configuration(commandTimeout: .milliseconds(300))
        configuration.pool.maxConnections = 1  // each node's one connection is reused: a reply left unread would cross
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        let nodes = try ClusterNodes(asking: cluster.ports[0])
        let names = (0..<60).map { RedisArgument("stalled-\($0)") }
        #expect(Set(names.compactMap { nodes.master(of: ClusterSlot.of($0))?.id }).count == 3, "the keys span every master")
        var mset: [RedisArgument] = ["MSET"]
        for name in names { mset += [name, name] }
        #expect(try blockingSend(client, mset) == .status("OK"))
        let expected = RedisReply.array(names.map { .bulk($0.bytes) })
        #expect(try blockingSend(client, ["MGET"] + names) == expected)
        let victim = try #require(nodes.master(of: ClusterSlot.of(names[0])))
        cluster.signal(port: victim.port, SIGSTOP)
        let stalled = #expect(throws: RedisError.self) { try blockingSend(client, ["MGET"] + names) }
        #expect(stalled?.code == .readTimeout, "\(String(describing: stalled))")
        cluster.signal(port: victim.port, SIGCONT)
        for _ in 0..<3 { #expect(try blockingSend(client, ["MGET"] + names) == expected) }
        for name in names.prefix(10) { #expect(try blockingSend(client, ["GET", name]) == .bulk(name.bytes)) }
    }

    @Test("a pipeline across slots is split per node and its replies come back in the caller's order", arguments: Mode.allCases)
    func pipelineAcrossSlots(mode: Mode) async throws {
        let client = try RedisClient(url: Self.sharedURL())
        defer { client.close() }
        let keys = TestKeys()
        var commands: [[RedisArgument]] = []
        for index in 0..<200 {
            commands.append(["SET", RedisArgument(keys("p\(index)")), RedisArgument(index), "EX", 60])
            commands.append(["INCR", RedisArgument(keys("p\(index)"))])
        }
        commands.append(["PING"])
        commands.append(["MGET", RedisArgument(keys("p0")), RedisArgument(keys("p199"))])
        let replies = mode == .sync ? try blockingPipeline(client, commands) : try await client.pipeline(commands)
        #expect(replies.count == commands.count)
        for index in 0..<200 {
            #expect(replies[2 * index] == .status("OK"))
            #expect(replies[2 * index + 1] == .integer(Int64(index + 1)))
        }
        #expect(replies[400] == .status("PONG"))
        #expect(replies[401] == .array([.bulk(Array("1".utf8)), .bulk(Array("200".utf8))]))
        _ = try await client.send(["DEL"] + (0..<200).map { RedisArgument(keys("p\($0)")) })
    }

    @Test("a transaction needs a connection routed by a key; keys of two slots are CROSSSLOT, a typed error with the server's message")
    func transactionsAndCrossSlot() async throws {
        let client = try RedisClient(url: Self.sharedURL())
        defer { client.close() }
        let keys = TestKeys()
        let a = keys("{tx}:a"), b = keys("{tx}:b")
        let unrouted = #expect(throws: RedisError.self) { try client.withConnection { _ in () } }
        #expect(unrouted?.code == .invalidArgument)
        #expect(unrouted?.message.contains("withConnection(routedBy:)") == true)
        let replies = try client.withConnection(routedBy: a) { connection in
            try connection.pipeline([["MULTI"], ["SET", RedisArgument(a), "1"], ["SET", RedisArgument(b), "2"], ["EXEC"]])
        }
        #expect(replies.last == .array([.status("OK"), .status("OK")]))
        let exec = try await client.withConnection(routedBy: b) { connection in
            try await connection.transaction([["INCR", RedisArgument(a)], ["INCR", RedisArgument(b)]])
        }
        #expect(exec == [.integer(2), .integer(3)])
        // Two slots in one script: the server refuses it, and says why.
        let other = keys("elsewhere")
        try #require(ClusterSlot.of(other) != ClusterSlot.of(a))
        let error = #expect(throws: RedisError.self) {
            try blockingSend(client, ["EVAL", "return redis.call('GET', KEYS[2])", 2, RedisArgument(a), RedisArgument(other)])
        }
        #expect(error?.code == .server)
        #expect(error?.message.hasPrefix("CROSSSLOT") == true || error?.message.contains("cross slot") == true, "\(String(describing: error))")
        _ = try await client.send(["DEL", RedisArgument(a), RedisArgument(b)])
    }

    @Test("scan and keys walk every master; the cursor names the master and is 0 only at the end", .ownThread)
    func scanEveryMaster() throws {
        let client = try RedisClient(url: Self.sharedURL())
        defer { client.close() }
        let keys = TestKeys()
        let names = (0..<60).map { keys("scan-\($0)") }
        try client.send(["MSET"] + names.flatMap { [RedisArgument($0), "1"] })
        defer { _ = try? client.send(["DEL"] + names.map { RedisArgument($0) }) }
        var cursor = "0", seen = Set<String>(), pages = 0, masters = Set<UInt64>()
        repeat {
            let reply = try client.send("SCAN", RedisArgument(cursor), "MATCH", RedisArgument(keys.prefix + "*"), "COUNT", 1000)
            cursor = try #require(reply.array?[0].string)
            masters.insert((UInt64(cursor) ?? 0) >> 48)
            seen.formUnion(reply.array?[1].array?.compactMap(\.string) ?? [])
            pages += 1
        } while cursor != "0" && pages < 10_000
        #expect(seen == Set(names))
        #expect(masters.isSuperset(of: [1, 2]), "the cursor moved on to the second and third master")
        #expect(Set(try client.send("KEYS", RedisArgument(keys.prefix + "*")).array?.compactMap(\.string) ?? []) == Set(names))
        #expect(try client.send("SCAN", RedisArgument(UInt64(7) << 48)) == .array([.bulk(Array("0".utf8)), .array([])]))
    }

    @Test("async: a SCAN page that times out on the master its cursor names is retried on that master, never on another")
    func asyncRetryStaysOnTheCursorsMaster() async throws {
        let capture = LogCapture()
        var configuration = try RedisConfiguration(url: Self.sharedURL())
        configuration.commandTimeout = .milliseconds(200)
        let client = try RedisClient(configuration: configuration, logger: capture.logger())
        defer { client.close() }
        let keys = TestKeys()
        let names = (0..<60).map { keys("retry-\($0)") }
        try await client.send(["MSET"] + names.flatMap { [RedisArgument($0), "1"] })
        defer { _ = try? client.send(["DEL"] + names.map { RedisArgument($0) }) }
        // The master a cursor with index 1 names: the client orders masters by address.
        let nodes = try ClusterNodes(asking: Self.sharedPorts()[0])
        let second = try #require(nodes.masters.sorted { "127.0.0.1:\($0.port)" < "127.0.0.1:\($1.port)" }.dropFirst().first)

        // Stall that master (DEBUG SLEEP, below the cluster's 1 s node timeout) and wait until it is stalled.
        let sleeper = try TestCluster.nodeClient(port: second.port)
        defer { sleeper.close() }
        async let slept: RedisReply = sleeper.send("DEBUG", "SLEEP", "0.7")
        var probeConfiguration = RedisConfiguration(address: .tcp(host: "127.0.0.1", port: second.port))
        probeConfiguration.commandTimeout = .milliseconds(50)
        let probe = try RedisClient(configuration: probeConfiguration)
        defer { probe.close() }
        // Bounded: a stall missed (the test delayed past the 0.7 s) fails the test, not hangs it.
        let stallDeadline = ContinuousClock.now + .seconds(5)
        while (try? blockingPing(probe)) != nil {
            guard ContinuousClock.now < stallDeadline else {
                Issue.record("the master on port \(second.port) never stalled: DEBUG SLEEP was over before it was seen")
                return
            }
            try await Task.sleep(for: .milliseconds(5))
        }

        let outcome: Result<RedisReply, any Error>
        do { outcome = .success(try await client.send("SCAN", RedisArgument(UInt64(1) << 48), "MATCH", RedisArgument(keys.prefix + "*"), "COUNT", 1000)) } catch {
            outcome = .failure(error)
        }
        _ = try await slept
        #expect(capture.all.contains { $0.message == "redis read-only command retried on a fresh connection" }, "the first attempt timed out")
        switch outcome {
        case .failure(let error):
            #expect((error as? RedisError)?.code == .readTimeout, "\(error)")
        case .success(let reply):
            // Answered by the stalled master once it woke: only its own keys.
            let found = reply.array?[1].array?.compactMap(\.string) ?? []
            for key in found { #expect(nodes.master(of: ClusterSlot.of(key))?.port == second.port, "\(key) is another master's") }
        }
    }

    @Test("getOrSet runs the factory once for 64 callers in 4 processes, and a lock excludes 4 processes x 8 threads, on the cluster", .ownThread)
    func acrossProcesses() throws {
        let url = try Self.sharedURL()
        try expectGetOrSetAcrossProcesses(url: url)
        let prefix = "bctest:\(UUID().uuidString):"
        let cache = try RedisCacheAdapter(url: url, keyPrefix: prefix)
        defer { _ = try? cache.flushAll(); cache.close() }
        // The section's MULTI touches both counters: one hash tag keeps them in one slot.
        let mutexes = try (0..<4).map { _ in try PeerProcess(["mutex", url, prefix, "lock", "{mutex}:counter", "{mutex}:done", "8", "6", "5000"]) }
        var completed = 0
        for peer in mutexes {
            let (lines, status) = peer.finish()
            #expect(status == 0)
            completed += Int(lines.last?.split(separator: " ").last ?? "") ?? 0
        }
        #expect(completed == 4 * 8 * 6)
        #expect(try cache.get("{mutex}:counter") == .int(Int64(completed)))
        #expect(try cache.get("{mutex}:done") == .int(Int64(completed)))
    }

    @Test("a slot migrated while 8 writers write to it (ASK during, MOVED after): every acknowledged write is read back, no reply crossed")
    func slotMigration() async throws {
        let cluster = try TestCluster()
        defer { cluster.stop() }
        let client = try RedisClient(configuration: cluster.configuration())
        defer { client.close() }
        let tag = "{migrating}"
        let slot = ClusterSlot.of(tag)
        let nodes = try ClusterNodes(asking: cluster.ports[0])
        let source = try #require(nodes.master(of: slot))
        let target = try #require(nodes.masters.first { $0.id != source.id })
        let sourceClient = try cluster.nodeClient(port: source.port), targetClient = try cluster.nodeClient(port: target.port)
        defer { sourceClient.close(); targetClient.close() }
        let writers = MigrationWriters()
        // Four writers on the async API, four on threads through the blocking one.
        let asyncWriters = (0..<4).map { task in
            Task { try await writers.run(task: task) { arguments in try await client.send(arguments) } }
        }
        let threads = DispatchGroup()
        for task in 4..<8 {
            DispatchQueue.global().async(group: threads) {
                try? writers.runBlocking(task: task) { arguments in try blockingSend(client, arguments) }
            }
        }
        try await Task.sleep(for: .milliseconds(200))
        // Move the slot a few keys at a time for a second, then the rest, then hand it over.
        try await targetClient.send("CLUSTER", "SETSLOT", RedisArgument(slot), "IMPORTING", RedisArgument(source.id))
        try await sourceClient.send("CLUSTER", "SETSLOT", RedisArgument(slot), "MIGRATING", RedisArgument(target.id))
        let started = ContinuousClock.now
        while true {
            let batch = ContinuousClock.now - started < .seconds(1) ? 5 : 1000
            let moving = try await sourceClient.send("CLUSTER", "GETKEYSINSLOT", RedisArgument(slot), RedisArgument(batch)).array ?? []
            if moving.isEmpty, ContinuousClock.now - started >= .seconds(1) { break }
            if !moving.isEmpty {
                try await sourceClient.send(["MIGRATE", "127.0.0.1", RedisArgument(target.port), "", 0, 5000, "KEYS"]
                                            + moving.compactMap(\.bytes).map { RedisArgument(bytes: $0) })
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        for port in nodes.masters.map(\.port) {
            let node = try cluster.nodeClient(port: port)
            defer { node.close() }
            try await node.send("CLUSTER", "SETSLOT", RedisArgument(slot), "NODE", RedisArgument(target.id))
        }
        try await Task.sleep(for: .milliseconds(500))
        writers.stop()
        for writer in asyncWriters { try await writer.value }
        threads.wait()

        let log = writers.snapshot()
        #expect(log.crossed.isEmpty, "replies crossed: \(log.crossed.prefix(3))")
        #expect(log.untypedFailures == 0)
        #expect(log.acknowledged.count == 8 && log.acknowledged.allSatisfy { $0.count > 20 }, "every writer kept writing")
        // Every acknowledged write, read back by its own writer's keys, now on the target.
        for (task, counters) in log.acknowledged.enumerated() {
            let names = counters.map { RedisArgument(MigrationWriters.key(task: task, counter: $0)) }
            let stored = try await client.send(["MGET"] + names).array ?? []
            #expect(stored == counters.map { .bulk(Array(String($0).utf8)) }, "task \(task) lost acknowledged writes")
            #expect(try await targetClient.send(["EXISTS"] + names) == .integer(Int64(counters.count)))
        }
        let asked = try await targetClient.send("INFO", "commandstats").string ?? ""
        #expect(asked.contains("cmdstat_asking:calls="), "the writers took the ASK path")
        print("Cluster slot migration: \(log.acknowledged.map(\.count).reduce(0, +)) acknowledged writes, \(log.failures) typed failures")
    }

    @Test("a master killed under load from both APIs at once: blocking and async calls to its slots fail until its replica is promoted, then succeed on both; no reply crossed")
    func masterKilled() async throws {
        let cluster = try TestCluster()
        defer { cluster.stop() }
        let client = try RedisClient(configuration: cluster.configuration(commandTimeout: .seconds(1)))
        defer { client.close() }
        let nodes = try ClusterNodes(asking: cluster.ports[0])
        let names = (0..<48).map { "killed-\($0)" }
        let victim = try #require(nodes.master(of: ClusterSlot.of(names[0])))
        let onVictim = Set(names.filter { nodes.master(of: ClusterSlot.of($0))?.id == victim.id })
        // Replicated before the kill, so the promoted replica has it.
        try await client.send(["MSET"] + names.flatMap { [RedisArgument($0), "seed"] })
        for master in nodes.masters {
            let node = try cluster.nodeClient(port: master.port)
            defer { node.close() }
            _ = try await node.send("WAIT", 1, 2000)
        }
        let log = KillLog()
        let killedAt = ContinuousClock.now
        /// Task `task`'s keys (each key is one task's alone: any other value read back is a crossed reply).
        @Sendable func keys(of task: Int) -> [String] { names.enumerated().filter { $0.offset % 4 == task }.map(\.element) }
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            // Tasks 0 and 1 call the async API; 2 and 3 the blocking API, each on a thread of its own.
            for task in 0..<2 {
                tasks.addTask {
                    var counter = 0
                    while !log.done {
                        for name in keys(of: task) {
                            counter += 1
                            let value = "t\(task)-\(counter)"
                            do {
                                try await client.send("SET", RedisArgument(name), RedisArgument(value))
                                log.readBack(try await client.send("GET", RedisArgument(name)), of: name, wrote: value, .async, onVictim: onVictim.contains(name))
                            } catch {
                                log.failed(error, .async, at: .now)
                            }
                        }
                        try await Task.sleep(for: .milliseconds(5))
                    }
                }
            }
            for task in 2..<4 {
                tasks.addTask {
                    await onOwnThread {
                        var counter = 0
                        while !log.done {
                            for name in keys(of: task) {
                                counter += 1
                                let value = "t\(task)-\(counter)"
                                do {
                                    try client.send(["SET", RedisArgument(name), RedisArgument(value)])
                                    log.readBack(try client.send(["GET", RedisArgument(name)]), of: name, wrote: value, .blocking, onVictim: onVictim.contains(name))
                                } catch {
                                    log.failed(error, .blocking, at: .now)
                                }
                            }
                            Thread.sleep(forTimeInterval: 0.005)
                        }
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            log.markKill()
            cluster.kill(port: victim.port)
            let deadline = ContinuousClock.now + .seconds(30)
            while !log.recovered, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            try await Task.sleep(for: .milliseconds(300))
            log.finish()
            try await tasks.waitForAll()
        }
        let result = log.snapshot()
        #expect(result.crossed.isEmpty, "\(result.crossed.prefix(3))")
        #expect(result.untyped.isEmpty, "every failure is a connection error or a cluster retry reply: \(result.untyped.prefix(3))")
        for api in KillLog.API.allCases {
            #expect(result.failuresAfterKill[api, default: 0] > 0, "the kill was seen by the \(api) API")
            #expect(result.firstSuccessAfterFailure[api] != nil, "the \(api) API's calls recovered on the promoted replica")
        }
        let promoted = try ClusterNodes(asking: cluster.ports.first { $0 != victim.port }!)
        #expect(promoted.master(of: ClusterSlot.of(names[0]))?.port != victim.port)
        let recovery = KillLog.API.allCases.map { api in
            "\(api) \(result.firstSuccessAfterFailure[api].map { "\(killedAt.duration(to: $0))" } ?? "never") (\(result.failuresAfterKill[api, default: 0]) calls failed)"
        }
        print("Cluster master kill: calls to its slots succeeded again after SIGKILL: \(recovery.joined(separator: ", "))")
    }

    @Test("rediss+cluster://: a TLS-only cluster (bus and replication too) serves the sync and async paths")
    func overTLS() async throws {
        let cluster = try TestCluster(tls: true)
        defer { cluster.stop() }
        #expect(cluster.url.hasPrefix("rediss+cluster://"))
        let cache = try RedisCacheAdapter(client: RedisClient(configuration: cluster.configuration()), keyPrefix: "tls:")
        defer { cache.close() }
        let values = Dictionary(uniqueKeysWithValues: (0..<100).map { ("k\($0)", JSONValue.int(Int64($0))) })
        try blockingRoundTrip(cache, values)
        #expect(try await cache.mget(Array(values.keys)) == values)
        #expect(try await cache.incr("counter", by: 2) == 2)
        #expect(Set(try await cache.keys()) == Set(values.keys).union(["counter"]))
    }

    private func blockingRoundTrip(_ cache: RedisCacheAdapter, _ values: [String: JSONValue]) throws {
        try cache.mset(values, ttl: .seconds(60))
        #expect(try cache.mget(Array(values.keys)) == values)
        try cache.getLock("job").withLock { () throws in #expect(try cache.get("k7") == .int(7)) }
    }

    @Test("Python Baldur on redis+cluster:// and BaldurCache read each other's values and respect each other's locks", .ownThread)
    func pythonInterop() throws {
        let url = try Self.sharedURL()
        let prefix = "bctest:\(UUID().uuidString):"
        let cache = try RedisCacheAdapter(url: url, keyPrefix: prefix)
        defer { _ = try? cache.flushAll(); cache.close() }
        let fromSwift = Dictionary(uniqueKeysWithValues: (0..<20).map { ("swift-\($0)", JSONValue.int(Int64($0))) })
        try cache.mset(fromSwift, ttl: .seconds(60))
        #expect(try PythonPeer.run([["op": "get", "prefix": .string(prefix), "key": "swift-3"]], environment: ["BALDUR_PEER_URL": url]) == [3])
        try expectPythonInterop(cache, prefix: prefix, environment: ["BALDUR_PEER_URL": url])
    }
}

/// The synchronous `send`, which async code would not pick by itself.
@discardableResult
private func blockingSend(_ client: RedisClient, _ arguments: [RedisArgument]) throws -> RedisReply {
    try client.send(arguments)
}

private func blockingPipeline(_ client: RedisClient, _ commands: [[RedisArgument]]) throws -> [RedisReply] {
    try client.pipeline(commands)
}

private func directGet(_ client: RedisClient, _ key: String) throws -> RedisReply {
    try client.send("GET", RedisArgument(key))
}

/// The migration test's writers: each writes only its own keys, in the
/// migrating slot, and reads one back now and then.
private final class MigrationWriters: Sendable {
    struct Log {
        var acknowledged: [[Int]] = Array(repeating: [], count: 8)
        var crossed: [String] = []
        var failures = 0
        var untypedFailures = 0
    }

    private let state = PlainMutex(Log())
    private let stopped = Atomic(false)

    static func key(task: Int, counter: Int) -> String { "{migrating}:t\(task):\(counter)" }

    func run(task: Int, _ send: ([RedisArgument]) async throws -> RedisReply) async throws {
        var counter = 0
        while !stopped.load(ordering: .acquiring) {
            counter += 1
            record(task: task, counter: counter, await outcome { try await send(["SET", RedisArgument(Self.key(task: task, counter: counter)), RedisArgument(counter)]) })
            if counter % 5 == 0 {
                let earlier = counter - 3
                check(task: task, counter: earlier, await outcome { try await send(["GET", RedisArgument(Self.key(task: task, counter: earlier))]) })
            }
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    func runBlocking(task: Int, _ send: ([RedisArgument]) throws -> RedisReply) throws {
        var counter = 0
        while !stopped.load(ordering: .acquiring) {
            counter += 1
            record(task: task, counter: counter, Result { try send(["SET", RedisArgument(Self.key(task: task, counter: counter)), RedisArgument(counter)]) })
            if counter % 5 == 0 {
                let earlier = counter - 3
                check(task: task, counter: earlier, Result { try send(["GET", RedisArgument(Self.key(task: task, counter: earlier))]) })
            }
            Thread.sleep(forTimeInterval: 0.002)
        }
    }

    private func outcome(_ body: () async throws -> RedisReply) async -> Result<RedisReply, any Error> {
        do { return .success(try await body()) } catch { return .failure(error) }
    }

    private func record(task: Int, counter: Int, _ result: Result<RedisReply, any Error>) {
        state.withLock { log in
            switch result {
            case .success(.status("OK")): log.acknowledged[task].append(counter)
            case .success(let other): log.crossed.append("task \(task) SET \(counter) answered \(other)")
            case .failure(let error): log.failures += 1; if !(error is RedisError) { log.untypedFailures += 1 }
            }
        }
    }

    private func check(task: Int, counter: Int, _ result: Result<RedisReply, any Error>) {
        state.withLock { log in
            guard case .success(let reply) = result else { log.failures += 1; return }
            // Acknowledged writes must read back as written; an unacknowledged one may be absent.
            let wasAcknowledged = log.acknowledged[task].contains(counter)
            if reply != .bulk(Array(String(counter).utf8)), wasAcknowledged || reply != .null {
                log.crossed.append("task \(task) GET \(counter) answered \(reply)")
            }
        }
    }

    func stop() { stopped.store(true, ordering: .releasing) }

    func snapshot() -> Log { state.withLock { $0 } }
}

/// What the master-kill test's tasks saw.
private final class KillLog: Sendable {
    enum API: String, CaseIterable, Sendable { case blocking, async }

    struct Result {
        var crossed: [String] = []
        var untyped: [String] = []
        var failuresAfterKill: [API: Int] = [:]
        var firstSuccessAfterFailure: [API: ContinuousClock.Instant] = [:]
        var killed = false
        var done = false
    }

    private let state = PlainMutex(Result())

    var done: Bool { state.withLock { $0.done } }
    /// Both APIs' calls to the killed master's slots succeeded again after failing.
    var recovered: Bool { state.withLock { $0.firstSuccessAfterFailure.count == API.allCases.count } }

    func markKill() { state.withLock { $0.killed = true } }
    func finish() { state.withLock { $0.done = true } }
    func crossed(_ text: String) { state.withLock { $0.crossed.append(text) } }

    func failed(_ error: any Error, _ api: API, at instant: ContinuousClock.Instant) {
        state.withLock { log in
            if let error = error as? RedisError, error.isConnectionFatal || error.isTransient {} else { log.untyped.append("\(api): \(error)") }
            if log.killed { log.failuresAfterKill[api, default: 0] += 1 }
        }
    }

    /// A `GET` of `name` answered after the `SET` of `value`: any other
    /// value is a crossed reply (each key is one task's alone). On the killed
    /// master's slots, the first answer after a failure marks that API recovered.
    func readBack(_ reply: RedisReply, of name: String, wrote value: String, _ api: API, onVictim: Bool) {
        let now = ContinuousClock.now
        state.withLock { log in
            if reply.string != value { log.crossed.append("\(api): \(name): wrote \(value), read \(reply)") }
            if onVictim, log.killed, log.failuresAfterKill[api, default: 0] > 0, log.firstSuccessAfterFailure[api] == nil { log.firstSuccessAfterFailure[api] = now }
        }
    }

    func snapshot() -> Result { state.withLock { $0 } }
}

/// The synchronous `PING`, which async code would not pick by itself.
private func blockingPing(_ client: RedisClient) throws {
    try client.ping()
}
