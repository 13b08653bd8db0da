@testable import BaldurCache
import Dispatch
import Foundation
import Synchronization
import MetricsTestKit
import Testing

/// The near cache: values served from memory until Redis says they changed
/// (`CLIENT TRACKING ... BCAST` over RESP2). The contract suite runs through
/// a near cache too (`Provider.redisNear`).
@Suite("Near cache", .serialized)
struct NearCacheTests {
    /// An adapter with a near cache under a fresh literal prefix, once Redis tracks for it.
    static func nearAdapter(url: String? = nil, prefix: String = "bctest:\(UUID().uuidString):",
                            _ configuration: NearCacheConfiguration = NearCacheConfiguration()) throws -> RedisCacheAdapter {
        let cache = try RedisCacheAdapter(url: url ?? TestEnvironment.url(), keyPrefix: prefix, nearCache: configuration)
        try waitUntilTracking(cache)
        return cache
    }

    static func waitUntilTracking(_ cache: RedisCacheAdapter, within limit: Duration = .seconds(10)) throws {
        let deadline = ContinuousClock.now + limit
        while cache.nearCacheStatistics?.isTracking != true {
            guard ContinuousClock.now < deadline else { throw RedisError(.connectTimeout, "the near cache did not start tracking") }
            Thread.sleep(forTimeInterval: 0.005)
        }
    }

    /// ``nearAdapter(url:prefix:_:)`` for async tests: waits without holding a thread.
    static func nearAdapter(url: String? = nil, prefix: String = "bctest:\(UUID().uuidString):",
                            _ configuration: NearCacheConfiguration = NearCacheConfiguration()) async throws -> RedisCacheAdapter {
        let cache = try RedisCacheAdapter(url: url ?? TestEnvironment.url(), keyPrefix: prefix, nearCache: configuration)
        try await waitUntilTracking(cache)
        return cache
    }

    /// ``waitUntilTracking(_:within:)`` for async tests: a blocked thread of
    /// the cooperative pool could be the one the tracking connection's setup waits for.
    static func waitUntilTracking(_ cache: RedisCacheAdapter, within limit: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + limit
        while cache.nearCacheStatistics?.isTracking != true {
            guard ContinuousClock.now < deadline else { throw RedisError(.connectTimeout, "the near cache did not start tracking") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    @Test("a value read twice is served from memory the second time; writes through the adapter are read back at once", .ownThread)
    func hitsAndOwnWrites() throws {
        let cache = try Self.nearAdapter()
        defer { _ = try? cache.flushAll(); cache.close() }
        try cache.set("k", 1)
        #expect(try cache.get("k") == 1)
        // The invalidation of this process's own SET may still drop that value; wait for it.
        Thread.sleep(forTimeInterval: 0.05)
        #expect(try cache.get("k") == 1)
        let before = try #require(cache.nearCacheStatistics)
        #expect(try cache.get("k") == 1)
        #expect(try cache.exists("k"))
        #expect(cache.nearCacheStatistics?.hits == before.hits + 2)
        // Every write path drops the entry before its reply returns: read-your-writes.
        try cache.set("k", 2)
        #expect(try cache.get("k") == 2)
        #expect(try cache.incr("k", by: 5) == 7)
        #expect(try cache.get("k") == 7)
        #expect(try cache.delete("k"))
        #expect(try cache.get("k") == nil)
        try cache.mset(["a": 1, "b": 2] as [String: JSONValue])
        #expect(try cache.mget(["a", "b", "c"]) == ["a": 1, "b": 2])
        try cache.mset(["a": 3] as [String: JSONValue])
        #expect(try cache.mget(["a", "b"]) == ["a": 3, "b": 2])
        try cache.hset("h", field: "f", 1)
        #expect(try cache.hgetall("h") == ["f": 1])
        #expect(try cache.hget("h", field: "f") == 1)
        try cache.hset("h", field: "g", 2)
        #expect(try cache.hgetall("h") == ["f": 1, "g": 2])
        #expect(try cache.flushAll() == 3)
        #expect(try cache.get("b") == nil)
    }

    @Test("another client (redis-cli, Python Baldur) changes or deletes a key: the reader sees it within milliseconds, never the old value after", arguments: Mode.allCases)
    func changesByOthers(mode: Mode) async throws {
        let prefix = "bctest:\(UUID().uuidString):"
        let adapter = try await Self.nearAdapter(prefix: prefix)
        let cache = mode.drive(adapter)
        defer { _ = try? adapter.flushAll(); adapter.close() }
        try await cache.set("shared", "v1")
        // The invalidation of this process's own SET may drop the first value kept; then one more read keeps it.
        for _ in 0..<100 where (adapter.nearCacheStatistics?.hits ?? 0) == 0 {
            #expect(try await cache.get("shared") == "v1")
            try await Task.sleep(for: .milliseconds(1))
        }
        #expect((adapter.nearCacheStatistics?.hits ?? 0) >= 1)

        let url = try #require(URL(string: try TestEnvironment.url()))
        let cli = ["redis-cli", "-h", url.host ?? "127.0.0.1", "-p", String(url.port ?? 6379)]
        var delays: [Duration] = []
        let changes: [() throws -> Void] = [
            { try Self.run(cli + ["SET", prefix + "shared", "\"v2\""]) },
            { _ = try PythonPeer.run([["op": "set", "prefix": .string(prefix), "key": "shared", "value": "v3"]]) },
            { try Self.run(cli + ["DEL", prefix + "shared"]) },
        ]
        for (index, change) in changes.enumerated() {
            let expected: JSONValue? = index == 2 ? nil : .string("v\(index + 2)")
            try change()
            let changed = ContinuousClock.now
            let deadline = changed + .seconds(5)
            while try await cache.get("shared") != expected, ContinuousClock.now < deadline { try await Task.sleep(for: .microseconds(200)) }
            delays.append(changed.duration(to: .now))
            #expect(try await cache.get("shared") == expected, "change \(index) never seen")
            for _ in 0..<50 { #expect(try await cache.get("shared") == expected) }
        }
        print("Near cache (\(mode)): changes by redis-cli, Python Baldur, redis-cli DEL seen after \(delays.map(\.description).joined(separator: ", ")) (the change's own process start and exit not counted)")
    }

    @Test("one writer INCRs a counter 100,000 times (20,000 under ThreadSanitizer) while 8 readers read through near caches: no reader sees it go back, each sees the final value", .ownThread)
    func monotonicUnderWrites() throws {
        let prefix = "bctest:\(UUID().uuidString):"
        let writer = try RedisClient(url: TestEnvironment.url())
        defer { writer.close() }
        let counter = RedisArgument(prefix + "counter")
        try writer.send("SET", counter, 0)
        let readers = try (0..<8).map { _ in try Self.nearAdapter(prefix: prefix) }
        defer { for reader in readers { reader.close() } }
        let writes = TestEnvironment.volume(100_000)
        let finished = Atomic<Bool>(false)
        let lastWriteAt = PlainMutex<ContinuousClock.Instant?>(nil)
        let report = PlainMutex<(backwards: [String], seenFinalAfter: [Duration], hits: Int)>(([], [], 0))
        runOnThreads(9) { thread in
            if thread == 8 {
                // Pipelined 100 at a time: the writer is fast, so readers race it.
                var written = 0
                while written < writes {
                    _ = try? writer.pipeline(Array(repeating: ["INCR", counter], count: 100))
                    written += 100
                }
                lastWriteAt.withLock { $0 = .now }
                finished.store(true, ordering: .releasing)
                return
            }
            let reader = readers[thread]
            var last: Int64 = -1
            while true {
                guard let value = (try? reader.get("counter", as: Int64.self)) ?? nil else { continue }
                if value < last { report.withLock { $0.backwards.append("reader \(thread): \(last) then \(value)") } }
                last = value
                if value == Int64(writes), finished.load(ordering: .acquiring) {
                    let seen = lastWriteAt.withLock { $0 }.map { $0.duration(to: .now) } ?? .zero
                    report.withLock { $0.seenFinalAfter.append(seen); $0.hits += reader.nearCacheStatistics?.hits ?? 0 }
                    return
                }
            }
        }
        let result = report.withLock { $0 }
        #expect(result.backwards.isEmpty, "\(result.backwards.prefix(5))")
        #expect(result.seenFinalAfter.count == 8)
        #expect(result.hits > 0, "the readers were served from memory")
        print("Near cache: 8 readers over \(writes) INCRs, none went back; the final value seen \(result.seenFinalAfter.max()?.description ?? "-") after the last write at worst; \(result.hits) reads served from memory")
    }

    @Test("8 reader threads and 8 tasks share one near cache while a writer INCRs in 100 bursts: no reader ever sees the counter fall")
    func concurrentReadersOfOneCacheNeverGoBack() async throws {
        let prefix = "bctest:\(UUID().uuidString):"
        let writer = try RedisClient(url: TestEnvironment.url())
        defer { writer.close() }
        let counter = RedisArgument(prefix + "counter")
        try await writer.send("SET", counter, 0)
        let cache = try await Self.nearAdapter(prefix: prefix)
        defer { cache.close() }
        let bursts = 100, perBurst = 20
        let final = Int64(bursts * perBurst)
        let writing = PlainMutex(true)
        let deadline = ContinuousClock.now + .seconds(60)
        let falls = PlainMutex<[String]>([])
        // A reader's loop: every value it reads must be at least the last one it read.
        let check: @Sendable (String, Int64?, inout Int64) -> Bool = { reader, value, last in
            guard let value else { return false }
            if value < last { falls.withLock { $0.append("\(reader) read \(value) after \(last)") } }
            last = max(last, value)
            return value == final && !writing.withLock { $0 }
        }
        async let threads: Void = withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            Thread {
                runOnThreads(9) { thread in
                    if thread == 8 {
                        // Bursts of single INCRs, each followed by a pause in which readers are served from memory.
                        for _ in 0..<bursts {
                            for _ in 0..<perBurst { _ = try? writer.send("INCR", counter) }
                            Thread.sleep(forTimeInterval: 0.003)
                        }
                        writing.withLock { $0 = false }
                        return
                    }
                    var last: Int64 = -1
                    while ContinuousClock.now < deadline {
                        if check("thread \(thread)", (try? cache.get("counter", as: Int64.self)) ?? nil, &last) { return }
                    }
                }
                done.resume()
            }.start()
        }
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    var last: Int64 = -1
                    while ContinuousClock.now < deadline {
                        let value: Int64?? = try? await cache.get("counter", as: Int64.self)
                        if check("task \(task)", value ?? nil, &last) { return }
                        await Task.yield()
                    }
                }
            }
        }
        await threads
        let found = falls.withLock { $0 }
        #expect(found.isEmpty, "\(found.count) falls: \(found.prefix(5))")
        #expect(try await cache.get("counter", as: Int64.self) == final)
        #expect((cache.nearCacheStatistics?.hits ?? 0) > 0, "the readers were served from memory")
        _ = try? await cache.flushAll()
    }

    @Test("1,000 adapters with a near cache opened, used and closed (close, async close, dropped; tracking or not yet): the server's clients and the process's descriptors return to their baseline")
    func closedAdaptersLeaveNoTrackingConnection() async throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        let observer = try RedisClient(url: server.url)
        defer { observer.close() }
        func clients() async throws -> [String] {
            try await observer.send("CLIENT", "LIST").string.map { $0.split(separator: "\n").map(String.init) } ?? []
        }
        func descriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0 }
        // Warm up: the event loops and the observer's connection exist before the baseline.
        let warm = try RedisCacheAdapter(url: server.url, keyPrefix: "bctest:warm:", nearCache: NearCacheConfiguration())
        try await Self.waitUntilTracking(warm)
        await warm.close()
        try await Task.sleep(for: .milliseconds(200))
        // Every shared connection of the observer open (they are used in turn).
        for _ in 0..<8 { _ = try await clients() }
        let baseline = (clients: try await clients().count, descriptors: descriptors())
        var stuck = 0
        for index in 0..<1000 {
            let cache = try RedisCacheAdapter(url: server.url, keyPrefix: "bctest:leak:\(index % 7):", nearCache: NearCacheConfiguration())
            if index % 2 == 0 { try await Self.waitUntilTracking(cache) }
            _ = try await cache.get("k", as: Int.self)
            switch index % 3 {
            case 0: (cache as any CacheProvider).close()
            case 1:
                // Bounded, so that a close that never returns fails the test instead of hanging it.
                let closed = PlainMutex(false)
                Task { await cache.close(); closed.withLock { $0 = true } }
                let limit = ContinuousClock.now + .seconds(5)
                while !closed.withLock({ $0 }), ContinuousClock.now < limit { try await Task.sleep(for: .milliseconds(1)) }
                if !closed.withLock({ $0 }) { stuck += 1 }
            default: break  // dropped
            }
        }
        #expect(stuck == 0, "\(stuck) async close() calls did not return within 5 seconds")
        let deadline = ContinuousClock.now + .seconds(10)
        var left = try await clients()
        while (left.count > baseline.clients || descriptors() > baseline.descriptors + 2), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            left = try await clients()
        }
        #expect(left.count <= baseline.clients, "\(left.count - baseline.clients) connections left: \(left.suffix(3).map { $0.split(separator: " ").filter { $0.hasPrefix("cmd=") || $0.hasPrefix("flags=") || $0.hasPrefix("sub=") }.joined(separator: " ") })")
        #expect(descriptors() <= baseline.descriptors + 2, "descriptors \(baseline.descriptors) -> \(descriptors())")
    }

    @Test("the invalidation connection killed (CLIENT KILL) under load: no stale read, the cache empties, bypasses, and comes back", arguments: Mode.allCases)
    func trackingConnectionKilled(mode: Mode) async throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        let adapter = try await Self.nearAdapter(url: server.url)
        let cache = mode.drive(adapter)
        defer { adapter.close() }
        let writer = try RedisCacheAdapter(url: server.url, keyPrefix: adapter.keyPrefix.resolve())
        defer { writer.close() }
        let admin = try RedisClient(url: server.url)
        defer { admin.close() }
        // Each acknowledged write and when. A read may trail a write by the
        // invalidation's trip; stale means older than a write acknowledged
        // 100 ms before the read began (a dead tracking connection unnoticed
        // would serve one value for the rest of the test).
        let acknowledged = PlainMutex<[(at: ContinuousClock.Instant, value: Int64)]>([])
        let stop = Atomic<Bool>(false)
        try await writer.set("v", 0)
        let writing = Task.detached {
            var next: Int64 = 0
            while !stop.load(ordering: .acquiring) {
                next += 1
                try await writer.set("v", next)
                acknowledged.withLock { $0.append((.now, next)) }
                try await Task.sleep(for: .microseconds(300))
            }
        }
        var stale: [String] = []
        var reads = 0
        let started = ContinuousClock.now
        var killed = false
        while ContinuousClock.now - started < .seconds(3) {
            if !killed, ContinuousClock.now - started > .seconds(1) {
                // The tracking connection is the one subscribed: kill it.
                #expect(try await admin.send("CLIENT", "KILL", "TYPE", "pubsub").integer == 1)
                killed = true
            }
            let cutoff = ContinuousClock.now - .milliseconds(100)
            let floor = acknowledged.withLock { $0.last { $0.at <= cutoff }?.value ?? 0 }
            guard let value = try await cache.get("v", as: Int64.self) else { continue }
            reads += 1
            if value < floor { stale.append("read \(value) after \(floor) was acknowledged") }
        }
        stop.store(true, ordering: .releasing)
        try await writing.value
        #expect(stale.isEmpty, "\(stale.prefix(5))")
        // Tracking again (a reconnect is a task, which may wait for a thread
        // while the suite runs), on a second connection, not the first one unnoticed dead.
        try await Self.waitUntilTracking(adapter)
        #expect(adapter.nearCache?.tracker.connects == 2, "a new tracking connection was made")
        let hits = adapter.nearCacheStatistics?.hits ?? 0
        _ = try await cache.get("v", as: Int64.self)
        _ = try await cache.get("v", as: Int64.self)
        #expect((adapter.nearCacheStatistics?.hits ?? 0) > hits, "served from memory again")
        print("Near cache (\(mode)): \(reads) reads across a CLIENT KILL of the tracking connection, none stale")
    }

    @Test("memory stays within the bounds under 1,000,000 distinct keys (200,000 under ThreadSanitizer); oldest entries are evicted", .ownThread)
    func bounded() throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        let bounds = NearCacheConfiguration(maxEntries: 20_000, maxBytes: 1 << 20)
        let cache = try Self.nearAdapter(url: server.url, bounds)
        defer { cache.close() }
        // A million keys (200,000 under ThreadSanitizer: still ten times
        // maxEntries), written by the server itself (a script per 50,000).
        let keyCount = TestEnvironment.volume(1_000_000)
        let prefix = cache.keyPrefix.resolve()
        let fill = "for i = tonumber(ARGV[2]), tonumber(ARGV[2]) + 49999 do redis.call('SET', ARGV[1] .. 'k' .. i, '\"value of k' .. i .. '\"') end"
        for start in stride(from: 0, to: keyCount, by: 50_000) {
            try cache.rawClient.send("EVAL", RedisArgument(fill), 0, RedisArgument(prefix), RedisArgument(start))
        }
        var peak = (entries: 0, bytes: 0)
        for batch in 0..<keyCount / 1000 {
            let keys = (0..<1000).map { "k\(batch * 1000 + $0)" }
            #expect(try cache.mget(keys).count == 1000)
            let statistics = try #require(cache.nearCacheStatistics)
            peak = (max(peak.entries, statistics.entries), max(peak.bytes, statistics.bytes))
        }
        let statistics = try #require(cache.nearCacheStatistics)
        #expect(peak.entries <= bounds.maxEntries)
        #expect(peak.bytes <= bounds.maxBytes)
        #expect(statistics.evictions >= keyCount - 5 * bounds.maxEntries)
        #expect(try cache.get("k\(keyCount - 1)") == .string("value of k\(keyCount - 1)"))
        print("Near cache: \(keyCount) keys through a 20,000-entry, 1 MiB near cache: at most \(peak.entries) entries and \(peak.bytes) bytes; \(statistics.evictions) evicted")
    }

    @Test("through Sentinel: the tracking connection goes to the master the sentinels name", .ownThread)
    func throughSentinel() throws {
        let prefix = "bctest:\(UUID().uuidString):"
        let cache = try RedisCacheAdapter(client: RedisClient(configuration: TestEnvironment.sentinelConfiguration()), keyPrefix: prefix,
                                          nearCache: NearCacheConfiguration())
        defer { _ = try? cache.flushAll(); cache.close() }
        try Self.waitUntilTracking(cache)
        try cache.set("k", "v1")
        let writer = try RedisClient(configuration: TestEnvironment.sentinelConfiguration())
        defer { writer.close() }
        for _ in 0..<100 where (cache.nearCacheStatistics?.hits ?? 0) == 0 {
            #expect(try cache.get("k") == "v1")
            Thread.sleep(forTimeInterval: 0.001)
        }
        #expect((cache.nearCacheStatistics?.hits ?? 0) >= 1)
        try writer.send("SET", RedisArgument(prefix + "k"), "\"v2\"")
        let deadline = ContinuousClock.now + .seconds(5)
        while try cache.get("k") != "v2", ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.001) }
        #expect(try cache.get("k") == "v2")
    }

    @Test("bad bounds are configuration errors; a cluster is refused clearly", .ownThread)
    func badConfiguration() throws {
        for bad in [NearCacheConfiguration(maxEntries: 0), NearCacheConfiguration(maxBytes: 10), NearCacheConfiguration(localTTL: .zero)] {
            let error = #expect(throws: RedisError.self) { try RedisCacheAdapter(url: TestEnvironment.url(), nearCache: bad) }
            #expect(error?.code == .invalidConfiguration)
        }
        let error = #expect(throws: RedisError.self) {
            try RedisCacheAdapter(url: TestEnvironment.value("BALDUR_TEST_CLUSTER_URL"), nearCache: NearCacheConfiguration())
        }
        #expect(error?.code == .unsupported)
    }

    @Test("hits, misses, invalidations and evictions are counted as baldur.near_cache.*", .ownThread)
    func counters() throws {
        let metrics = TestMetrics()
        let client = try RedisClient(configuration: TestEnvironment.configuration(), observability: RedisObservability(metrics: metrics))
        let cache = try RedisCacheAdapter(client: client, keyPrefix: "bctest:\(UUID().uuidString):",
                                          nearCache: NearCacheConfiguration(maxEntries: 2))
        defer { _ = try? cache.flushAll(); cache.close() }
        try Self.waitUntilTracking(cache)
        try cache.mset(["a": 1, "b": 2, "c": 3] as [String: JSONValue])
        Thread.sleep(forTimeInterval: 0.05)  // the invalidations of this process's own writes
        for key in ["a", "a", "b", "c"] { _ = try cache.get(key) }
        let other = try TestEnvironment.client()
        defer { other.close() }
        try other.send("SET", RedisArgument(cache.keyPrefix.resolve() + "c"), "4")
        let deadline = ContinuousClock.now + .seconds(5)
        while (cache.nearCacheStatistics?.invalidations ?? 0) == 0, ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.001) }
        func total(_ label: String) -> Int64 { metrics.counters(label: label).reduce(0) { $0 + $1.totalValue } }
        let statistics = try #require(cache.nearCacheStatistics)
        #expect(total("baldur.near_cache.hits") == Int64(statistics.hits) && statistics.hits >= 1)
        #expect(total("baldur.near_cache.misses") == Int64(statistics.misses) && statistics.misses >= 3)
        #expect(total("baldur.near_cache.invalidations") == Int64(statistics.invalidations) && statistics.invalidations >= 1)
        #expect(total("baldur.near_cache.evictions") == Int64(statistics.evictions) && statistics.evictions >= 1)
    }

    private static func run(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw RedisError(.io, "\(arguments.joined(separator: " ")) exited \(process.terminationStatus)") }
    }
}

/// The near cache's store on its own, without a server: which replies it keeps.
@Suite("Near cache store")
struct NearCacheStoreTests {
    static func trackingStore() -> NearCacheStore {
        let store = NearCacheStore(configuration: NearCacheConfiguration(), meters: nil)
        store.invalidateAll(fromServer: false, tracking: true)
        return store
    }

    static func isHit(_ lookup: NearCacheStore.Lookup) -> Bool {
        if case .hit = lookup { return true }
        return false
    }

    @Test("a reply to a replaced placeholder drops the replacement's value, which may be older", .ownThread)
    func replyToAReplacedPlaceholderDropsTheReplacement() throws {
        let store = Self.trackingStore()
        let key = NearKey(prefix: "p:", key: "counter")
        // Reader 1 leaves a placeholder; a write's invalidation removes it; reader 2 leaves a new one.
        guard case .miss(let first?) = store.lookup(key) else { Issue.record("no placeholder"); return }
        store.invalidate(key, fromServer: true)
        guard case .miss(let second?) = store.lookup(key) else { Issue.record("no placeholder"); return }
        // Reader 2's GET ran first on the server (1060); reader 1's ran after the next write (1061).
        store.store(.string(Array("1060".utf8)), for: second)
        store.store(.string(Array("1061".utf8)), for: first)
        // Reader 1 returned 1061: it must not read 1060 from memory next.
        #expect(!Self.isHit(store.lookup(key, placeholder: false)))
    }

    @Test("a reply read without a placeholder (bypass, HGET, EXISTS) drops what is kept or pending for its key", .ownThread)
    func replyReadWithoutKeepingDropsTheEntry() {
        let store = Self.trackingStore()
        let key = NearKey(prefix: "p:", key: "k")
        guard case .miss(let ticket?) = store.lookup(key) else { Issue.record("no placeholder"); return }
        store.readWithoutKeeping(key)
        store.store(.string(Array("1".utf8)), for: ticket)
        #expect(!Self.isHit(store.lookup(key, placeholder: false)))
    }

    @Test("two reads sharing a placeholder with the same answer keep it; different answers keep neither", .ownThread)
    func sharedPlaceholder() {
        let store = Self.trackingStore()
        let key = NearKey(prefix: "p:", key: "k")
        guard case .miss(let ticket?) = store.lookup(key) else { Issue.record("no placeholder"); return }
        guard case .miss(let shared?) = store.lookup(key) else { Issue.record("not shared"); return }
        store.store(.string(Array("1".utf8)), for: ticket)
        store.store(.string(Array("1".utf8)), for: shared)
        #expect(Self.isHit(store.lookup(key)))
        store.invalidate(key, fromServer: true)
        guard case .miss(let third?) = store.lookup(key) else { Issue.record("no placeholder"); return }
        guard case .miss(let fourth?) = store.lookup(key) else { Issue.record("not shared"); return }
        store.store(.string(Array("1".utf8)), for: third)
        store.store(.string(Array("2".utf8)), for: fourth)
        #expect(!Self.isHit(store.lookup(key, placeholder: false)))
    }

    // MARK: Each thread's copies (NearCacheThreadCopies)

    /// The string kept for `key`, `nil` when the lookup is not a hit.
    static func kept(_ store: NearCacheStore, _ key: NearKey) -> String? {
        guard case .hit(.string(let bytes), _) = store.lookup(key, placeholder: false) else { return nil }
        return bytes.map { String(decoding: $0, as: UTF8.self) } ?? "(missing)"
    }

    /// Keeps `value` for `key` and reads it until this thread serves it from its copy.
    static func keepAndCopy(_ store: NearCacheStore, _ key: NearKey, _ value: String) {
        guard case .miss(let ticket?) = store.lookup(key) else { Issue.record("no placeholder for \(key.key)"); return }
        store.store(.string(Array(value.utf8)), for: ticket)
        for _ in 0..<3 { #expect(kept(store, key) == value) }
    }

    @Test("a thread's copy is never served once its value left the store, whichever way it left", .ownThread)
    func threadCopiesNeverOutliveTheirValue() {
        let key = NearKey(prefix: "p:", key: "k")
        let ways: [(String, (NearCacheStore) -> Void)] = [
            ("invalidated by Redis", { $0.invalidate(key, fromServer: true) }),
            ("invalidated by a write", { $0.invalidate(key, fromServer: false) }),
            ("a reply not kept", { $0.readWithoutKeeping(key) }),
            ("flushed", { $0.invalidateAll(fromServer: true) }),
            ("tracking lost", { $0.invalidateAll(fromServer: false, tracking: false) }),
            ("evicted", { store in
                for index in 0..<2 {
                    let other = NearKey(prefix: "p:", key: "other\(index)")
                    if case .miss(let ticket?) = store.lookup(other) { store.store(.string([1]), for: ticket) }
                }
            }),
        ]
        for (way, leave) in ways {
            let store = NearCacheStore(configuration: NearCacheConfiguration(maxEntries: 2), meters: nil)
            store.invalidateAll(fromServer: false, tracking: true)
            Self.keepAndCopy(store, key, "old")
            leave(store)
            #expect(Self.kept(store, key) == nil, "after \(way)")
            store.invalidateAll(fromServer: false, tracking: true)
            Self.keepAndCopy(store, key, "new")
            #expect(Self.kept(store, key) == "new", "after \(way)")
        }
    }

    @Test("another thread's invalidation ends this thread's copy; hits from copies are counted", .ownThread)
    func anotherThreadsInvalidationEndsThisThreadsCopy() {
        let store = Self.trackingStore()
        let key = NearKey(prefix: "p:", key: "k")
        let reader = SerialThread()
        reader.run { Self.keepAndCopy(store, key, "1") }
        #expect(store.statistics.hits == 3)
        store.invalidate(key, fromServer: true)
        reader.run {
            #expect(Self.kept(store, key) == nil)
            Self.keepAndCopy(store, key, "2")
        }
        #expect(store.statistics.hits == 6)
    }

    @Test("a copy expires with its entry", .ownThread)
    func threadCopiesExpireWithTheirEntry() throws {
        let store = Self.trackingStore()
        let key = NearKey(prefix: "p:", key: "k")
        guard case .miss(let ticket?) = store.lookup(key) else { Issue.record("no placeholder"); return }
        store.store(.string(Array("v".utf8)), expiresIn: .milliseconds(50), for: ticket)
        for _ in 0..<3 { #expect(Self.kept(store, key) == "v") }
        Thread.sleep(forTimeInterval: 0.1)
        #expect(Self.kept(store, key) == nil)
    }

    @Test("copies of two stores on one thread stay apart", .ownThread)
    func threadCopiesOfTwoStoresStayApart() {
        let first = Self.trackingStore()
        let second = Self.trackingStore()
        let key = NearKey(prefix: "p:", key: "k")
        Self.keepAndCopy(first, key, "first")
        Self.keepAndCopy(second, key, "second")
        for _ in 0..<3 {
            #expect(Self.kept(first, key) == "first")
            #expect(Self.kept(second, key) == "second")
        }
        second.invalidate(key, fromServer: true)
        #expect(Self.kept(first, key) == "first")
        #expect(Self.kept(second, key) == nil)
    }
}

/// One thread that runs the blocks given to it in turn, each to its end
/// (a thread's near-cache copies belong to that thread).
final class SerialThread: @unchecked Sendable {
    // Why @unchecked Sendable is safe: `work` is only touched under `lock`.
    private let lock = NSCondition()
    private var work: [@Sendable () -> Void] = []
    private var done = 0

    init() {
        let thread = Thread { [self] in
            while true {
                lock.lock()
                while work.isEmpty { lock.wait() }
                let block = work.removeFirst()
                lock.unlock()
                block()
                lock.lock()
                done += 1
                lock.broadcast()
                lock.unlock()
            }
        }
        thread.start()
    }

    /// Runs `block` on the thread and waits for it.
    func run(_ block: @escaping @Sendable () -> Void) {
        lock.lock()
        work.append(block)
        let target = done + work.count
        lock.broadcast()
        while done < target { lock.wait() }
        lock.unlock()
    }
}
