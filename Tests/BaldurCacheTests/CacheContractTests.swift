import BaldurCache
import Foundation
import Synchronization
import Testing

/// The providers the contract is run against: Redis over plain TCP, over
/// TLS (`rediss://`, the test CA), through Sentinel (the shared group), on
/// the shared Redis Cluster, through a near cache, and the in-memory twin.
enum Provider: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case redis, redisTLS, redisSentinel, redisCluster, redisNear, memory

    var testDescription: String { rawValue }

    /// A provider whose keys all live under a fresh literal prefix.
    func make(defaultTTL: Duration? = nil) throws -> any CacheProvider {
        let prefix = "bctest:\(UUID().uuidString):"
        switch self {
        case .redis: return try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: prefix, defaultTTL: defaultTTL)
        case .redisTLS: return try RedisCacheAdapter(url: TestEnvironment.tlsURL(), keyPrefix: prefix, defaultTTL: defaultTTL)
        case .redisSentinel:
            return try RedisCacheAdapter(client: RedisClient(configuration: TestEnvironment.sentinelConfiguration()), keyPrefix: prefix, defaultTTL: defaultTTL)
        case .redisCluster: return try RedisCacheAdapter(url: TestEnvironment.value("BALDUR_TEST_CLUSTER_URL"), keyPrefix: prefix, defaultTTL: defaultTTL)
        case .redisNear:
            return try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: prefix, defaultTTL: defaultTTL, nearCache: NearCacheConfiguration())
        case .memory: return try InMemoryCacheAdapter(keyPrefix: prefix, defaultTTL: defaultTTL)
        }
    }
}

struct Order: Codable, Equatable {
    var id: Int
    var customer: String
    var total: Double
    var tags: [String]
    var shipped: Bool?
}

/// How the contract is driven: through the synchronous calls or the async ones.
enum Mode: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sync, async

    var testDescription: String { rawValue }

    /// `cache` seen through ``AsyncCacheProvider``: its own async calls, or
    /// its blocking calls behind a thin driver.
    func drive(_ cache: any CacheProvider & AsyncCacheProvider) -> any AsyncCacheProvider {
        self == .async ? cache : SyncDriver(cache)
    }
}

extension Provider {
    func makeBoth(defaultTTL: Duration? = nil) throws -> any CacheProvider & AsyncCacheProvider {
        try make(defaultTTL: defaultTTL) as! any CacheProvider & AsyncCacheProvider
    }
}

/// Runs `body` with a fresh provider and removes its keys afterwards.
func withProvider(_ provider: Provider, defaultTTL: Duration? = nil, _ body: (any CacheProvider) throws -> Void) throws {
    let cache = try provider.make(defaultTTL: defaultTTL)
    defer {
        _ = try? cache.flushAll()
        cache.close()
    }
    try body(cache)
}

/// Runs `body` with a fresh provider, driven as `mode` says, and removes its keys afterwards.
func withProvider(
    _ provider: Provider, _ mode: Mode, defaultTTL: Duration? = nil, _ body: (any AsyncCacheProvider) async throws -> Void
) async throws {
    let cache = try provider.makeBoth(defaultTTL: defaultTTL)
    let driven = mode.drive(cache)
    do {
        try await body(driven)
    } catch {
        _ = try? await driven.flushAll()
        await driven.close()
        throw error
    }
    _ = try? await driven.flushAll()
    await driven.close()
}

@Suite("CacheProvider contract")
struct CacheContractTests {
    @Test("every JSON kind round-trips through set and get", arguments: Provider.allCases, Mode.allCases)
    func jsonKinds(provider: Provider, mode: Mode) async throws {
        try await withProvider(provider, mode) { cache async throws in
            let values: [JSONValue] = [
                42, -7, 1.0, 0.1, 1e100, true, false, nil, "h\u{e9}llo \u{1F600}", "", "quote \" backslash \\ newline \n nul \u{0}",
                .int(.max), .int(.min), [], [:], [1, "two", [3.5, nil]], ["status": "executing", "started_at": 1732640000.5, "nested": ["a": [true]]],
            ]
            for (index, value) in values.enumerated() {
                try await cache.set("v\(index)", value)
                #expect(try await cache.get("v\(index)") == value, "value \(index)")
            }
            #expect(try await cache.get("missing") == nil)
        }
    }

    @Test("Codable values round-trip and decode errors name the key", arguments: Provider.allCases, Mode.allCases)
    func codable(provider: Provider, mode: Mode) async throws {
        try await withProvider(provider, mode) { cache async throws in
            let order = Order(id: 7, customer: "Zoë", total: 19.5, tags: ["a", "b"], shipped: nil)
            try await cache.set("order", order)
            #expect(try await cache.get("order", as: Order.self) == order)
            try await cache.set("not-an-order", ["id": "seven"] as JSONValue)
            let error = await #expect(throws: RedisError.self) { try await cache.get("not-an-order", as: Order.self) }
            #expect(error?.code == .decoding)
            #expect(error?.message.contains("not-an-order") == true)
            #expect(error?.message.contains("seven") == false)
        }
    }

    @Test("delete and exists", arguments: Provider.allCases, Mode.allCases)
    func deleteAndExists(provider: Provider, mode: Mode) async throws {
        try await withProvider(provider, mode) { cache async throws in
            try await cache.set("k", 1)
            #expect(try await cache.exists("k"))
            #expect(try await cache.delete("k"))
            #expect(try await !cache.exists("k"))
            #expect(try await !cache.delete("k"))
        }
    }

    @Test("counters add and subtract, start at 0, read back as JSON integers, and refuse non-integers", arguments: Provider.allCases, Mode.allCases)
    func counters(provider: Provider, mode: Mode) async throws {
        try await withProvider(provider, mode) { cache async throws in
            #expect(try await cache.incr("c") == 1)
            #expect(try await cache.incr("c", by: 10) == 11)
            #expect(try await cache.decr("c") == 10)
            #expect(try await cache.decr("c", by: 15) == -5)
            #expect(try await cache.get("c") == .int(-5))
            try await cache.set("text", "abc")
            let error = await #expect(throws: RedisError.self) { try await cache.incr("text") }
            #expect(error?.code == .server)
            #expect(error?.message.contains("not an integer") == true)
        }
    }

    @Test("TTLs: set, defaultTTL, expire; lifetime(of:) tells no-expiry from missing, to the millisecond", arguments: Provider.allCases, Mode.allCases)
    func ttls(provider: Provider, mode: Mode) async throws {
        try await withProvider(provider, mode, defaultTTL: .seconds(100)) { cache async throws in
            try await cache.set("default", 1)
            #expect((90...100).contains(try await seconds(cache.lifetime(of: "default"))))
            try await cache.set("explicit", 1, ttl: .seconds(30))
            #expect((25...30).contains(try await seconds(cache.lifetime(of: "explicit"))))
            try await cache.set("fractional", 1, ttl: .milliseconds(1500))
            // To the millisecond: TTL would have rounded 1.5 s to 1 or 2.
            let fractional = try #require(try await cache.lifetime(of: "fractional").timeToLive)
            #expect(fractional > .milliseconds(1000) && fractional <= .milliseconds(1500), "\(fractional)")
            #expect(try await cache.lifetime(of: "missing") == .missing)
            #expect(try await cache.incr("persistent") == 1)
            #expect(try await cache.lifetime(of: "persistent") == .persistent)
            #expect(try await cache.expire("persistent", ttl: .seconds(60)))
            #expect((55...60).contains(try await seconds(cache.lifetime(of: "persistent"))))
            #expect(try await !cache.expire("missing", ttl: .seconds(60)))
        }
    }

    @Test("a key set with a short TTL expires", arguments: Provider.allCases, Mode.allCases)
    func expiry(provider: Provider, mode: Mode) async throws {
        try await withProvider(provider, mode) { cache async throws in
            // Two seconds, not one: a busy machine (the TLS cases on two
            // cores) once took over a second between the SET and the check.
            try await cache.set("short", "gone soon", ttl: .seconds(2))
            #expect(try await cache.exists("short"))
            try await Task.sleep(for: .milliseconds(2300))
            #expect(try await cache.get("short") == nil)
            #expect(try await cache.lifetime(of: "short") == .missing)
        }
    }

    @Test("zero, negative and sub-second TTLs are refused clearly", arguments: Provider.allCases, Mode.allCases)
    func badTTLs(provider: Provider, mode: Mode) async throws {
        try await withProvider(provider, mode) { cache async throws in
            for ttl: Duration in [.zero, .seconds(-5), .milliseconds(500)] {
                let setError = await #expect(throws: RedisError.self) { try await cache.set("k", 1, ttl: ttl) }
                #expect(setError?.code == .invalidArgument)
                #expect(setError?.message.contains("at least 1 second") == true)
                await #expect(throws: RedisError.self) { try await cache.expire("k", ttl: ttl) }
                await #expect(throws: RedisError.self) { try await cache.setnx("k", 1, ttl: ttl) }
                await #expect(throws: RedisError.self) { try await cache.mset(["k": 1], ttl: ttl) }
                await #expect(throws: RedisError.self) { try await cache.pushLimit("l", 1, maxLength: 3, ttl: ttl) }
            }
            #expect(try await !cache.exists("k"))
        }
    }

    @Test("setnx stores only when absent, with its TTL in the same command", arguments: Provider.allCases, Mode.allCases)
    func setnx(provider: Provider, mode: Mode) async throws {
        try await withProvider(provider, mode) { cache async throws in
            #expect(try await cache.setnx("claim", ["owner": "a"] as JSONValue, ttl: .seconds(20)))
            #expect(try await !cache.setnx("claim", ["owner": "b"] as JSONValue, ttl: .seconds(20)))
            #expect(try await cache.get("claim")?["owner"] == "a")
            #expect((15...20).contains(try await seconds(cache.lifetime(of: "claim"))))
            #expect(try await cache.setnx("forever", 1))
            #expect(try await cache.lifetime(of: "forever") == .persistent)
        }
    }

    @Test("casDictField compares strings, numbers, booleans and null by type", arguments: Provider.allCases, Mode.allCases)
    func casDictField(provider: Provider, mode: Mode) async throws {
        try await withProvider(provider, mode) { cache async throws in
            try await cache.set("r", ["status": "pending", "n": 3, "f": 1.0, "ok": false, "none": nil] as JSONValue)
            #expect(try await !cache.casDictField("r", field: "status", expected: "done", newValue: ["status": "x"] as JSONValue))
            #expect(try await cache.casDictField("r", field: "status", expected: "pending", newValue: ["status": "claimed", "n": 3, "f": 1.0, "ok": false, "none": nil] as JSONValue))
            #expect(try await cache.get("r")?["status"] == "claimed")
            #expect(try await !cache.casDictField("r", field: "n", expected: "3", newValue: ["v": 1] as JSONValue))
            #expect(try await cache.casDictField("r", field: "n", expected: 3, newValue: ["n": 4, "f": 1.0, "ok": false, "none": nil] as JSONValue))
            #expect(try await cache.casDictField("r", field: "f", expected: 1, newValue: ["n": 4, "f": 2.5, "ok": false, "none": nil] as JSONValue))
            #expect(try await !cache.casDictField("r", field: "ok", expected: "false", newValue: ["v": 1] as JSONValue))
            #expect(try await cache.casDictField("r", field: "ok", expected: false, newValue: ["n": 4, "ok": true, "none": nil] as JSONValue))
            #expect(try await cache.casDictField("r", field: "none", expected: nil, newValue: ["n": 5, "ok": true] as JSONValue))
            #expect(try await cache.casDictField("r", field: "absent", expected: nil, newValue: ["n": 6] as JSONValue))
            #expect(try await !cache.casDictField("r", field: "n", expected: nil, newValue: ["n": 7] as JSONValue))
            #expect(try await cache.get("r") == ["n": 6])
        }
    }

    @Test("casDictField: missing key, non-object and scalar JSON are no match; object expected is refused; TTL applies", arguments: Provider.allCases, Mode.allCases)
    func casDictFieldEdges(provider: Provider, mode: Mode) async throws {
        try await withProvider(provider, mode) { cache async throws in
            #expect(try await !cache.casDictField("missing", field: "a", expected: nil, newValue: ["a": 1] as JSONValue))
            try await cache.set("array", [1, 2] as JSONValue)
            #expect(try await !cache.casDictField("array", field: "a", expected: nil, newValue: ["a": 1] as JSONValue))
            try await cache.set("scalar", "text")
            #expect(try await !cache.casDictField("scalar", field: "a", expected: nil, newValue: ["a": 1] as JSONValue))
            let error = await #expect(throws: RedisError.self) {
                try await cache.casDictField("array", field: "a", expected: ["x": 1], newValue: ["a": 1] as JSONValue)
            }
            #expect(error?.code == .invalidArgument)
            try await cache.set("rec", ["s": "a"] as JSONValue)
            #expect(try await cache.casDictField("rec", field: "s", expected: "a", newValue: ["s": "b"] as JSONValue, ttl: .seconds(40)))
            #expect((35...40).contains(try await seconds(cache.lifetime(of: "rec"))))
            #expect(try await cache.casDictField("rec", field: "s", expected: "b", newValue: ["s": "c"] as JSONValue))
            #expect(try await cache.lifetime(of: "rec") == .persistent)
        }
    }

    @Test("casTakeover takes failed and stale executing records, once", arguments: Provider.allCases, Mode.allCases)
    func casTakeover(provider: Provider, mode: Mode) async throws {
        try await withProvider(provider, mode) { cache async throws in
            let now = 1_732_640_000.5
            let claim: JSONValue = ["status": "executing", "started_at": .double(now)]
            try await cache.set("failed", ["status": "failed"] as JSONValue)
            #expect(try await cache.casTakeover("failed", newRecord: claim, staleBefore: now - 60, ttl: .seconds(30)))
            #expect((25...30).contains(try await seconds(cache.lifetime(of: "failed"))))
            try await cache.set("stale", ["status": "executing", "started_at": .double(now - 120)] as JSONValue)
            #expect(try await cache.casTakeover("stale", newRecord: claim, staleBefore: now - 60))
            // The fresh claim is not stale: a second taker loses.
            #expect(try await !cache.casTakeover("stale", newRecord: claim, staleBefore: now - 60))
            #expect(try await cache.get("stale") == claim)
            try await cache.set("completed", ["status": "completed", "started_at": 0] as JSONValue)
            #expect(try await !cache.casTakeover("completed", newRecord: claim, staleBefore: now))
            try await cache.set("no-start", ["status": "executing"] as JSONValue)
            #expect(try await !cache.casTakeover("no-start", newRecord: claim, staleBefore: now))
            #expect(try await !cache.casTakeover("missing", newRecord: claim, staleBefore: now))
            await #expect(throws: RedisError.self) { try await cache.casTakeover("failed", newRecord: claim, staleBefore: .nan) }
        }
    }

    @Test("mget omits missing keys; mset stores with and without a TTL; mdelete counts; empty calls are no-ops", arguments: Provider.allCases, Mode.allCases)
    func bulk(provider: Provider, mode: Mode) async throws {
        try await withProvider(provider, mode) { cache async throws in
            try await cache.mset(["a": 1, "b": 2] as [String: JSONValue])
            try await cache.mset(["c": "three"] as [String: JSONValue], ttl: .seconds(50))
            #expect(try await cache.mget(["a", "b", "c", "missing"]) == ["a": 1, "b": 2, "c": "three"])
            #expect(try await cache.lifetime(of: "a") == .persistent)
            #expect((45...50).contains(try await seconds(cache.lifetime(of: "c"))))
            #expect(try await cache.mget([]) == [:])
            try await cache.mset([String: JSONValue]())
            #expect(try await cache.mdelete([]) == 0)
            #expect(try await cache.mdelete(["a", "c", "missing"]) == 2)
            #expect(try await cache.mget(["a", "b", "c"]) == ["b": 2])
        }
    }

    @Test("hashes: raw field names, JSON values", arguments: Provider.allCases, Mode.allCases)
    func hashes(provider: Provider, mode: Mode) async throws {
        try await withProvider(provider, mode) { cache async throws in
            try await cache.hset("h", field: "count", 3)
            try await cache.hset("h", field: "naïve field", ["x": [1, 2]] as JSONValue)
            #expect(try await cache.hget("h", field: "count") == 3)
            #expect(try await cache.hget("h", field: "missing") == nil)
            #expect(try await cache.hget("no-hash", field: "count") == nil)
            #expect(try await cache.hgetall("h") == ["count": 3, "naïve field": ["x": [1, 2]]])
            #expect(try await cache.hgetall("no-hash") == [:])
            try await cache.set("string", 1)
            let error = await #expect(throws: RedisError.self) { try await cache.hget("string", field: "x") }
            #expect(error?.prefix == "WRONGTYPE")
        }
    }

    @Test("pushLimit keeps the last N, returns the pre-trim length, renews the TTL; bad maxLength is refused", arguments: Provider.allCases, Mode.allCases)
    func pushLimit(provider: Provider, mode: Mode) async throws {
        try await withProvider(provider, mode) { cache async throws in
            for index in 1...5 {
                #expect(try await cache.pushLimit("events", ["i": .int(Int64(index))] as JSONValue, maxLength: 3, ttl: .seconds(60)) == min(index, 3) + (index > 3 ? 1 : 0))
            }
            #expect(try await cache.listRange("events") == [["i": 3], ["i": 4], ["i": 5]])
            #expect(try await cache.listRange("events", start: 1, end: 1) == [["i": 4]])
            #expect(try await cache.listRange("events", start: -2, end: -1) == [["i": 4], ["i": 5]])
            #expect(try await cache.listRange("events", start: 5, end: 10) == [])
            #expect(try await cache.listRange("missing") == [])
            #expect((55...60).contains(try await seconds(cache.lifetime(of: "events"))))
            for bad in [0, -1] {
                let error = await #expect(throws: RedisError.self) { try await cache.pushLimit("events", 1, maxLength: bad) }
                #expect(error?.code == .invalidArgument)
            }
            #expect(try await cache.listRange("events").count == 3)
        }
    }

    @Test("keys and scan return keys without the prefix, unicode and binary-looking keys included", arguments: Provider.allCases, Mode.allCases)
    func keysAndScan(provider: Provider, mode: Mode) async throws {
        try await withProvider(provider, mode) { cache async throws in
            let names = ["plain", "ключ", "with space", "tab\tand\r\nnewline", "nul\u{0}byte", "glob*[chars]?", "emoji 🚀"]
            for name in names { try await cache.set(name, name) }
            #expect(Set(try await cache.keys()) == Set(names))
            for name in names { #expect(try await cache.get(name) == .string(name)) }
            #expect(try await cache.keys("pl*") == ["plain"])
            #expect(try await cache.keys("glob\\*\\[chars\\]\\?") == ["glob*[chars]?"])
            var seen = Set<String>()
            var cursor: UInt64 = 0
            repeat {
                let page = try await cache.scan("*", count: 2, cursor: cursor)
                seen.formUnion(page.keys)
                cursor = page.cursor
            } while cursor != 0
            #expect(seen == Set(names))
            await #expect(throws: RedisError.self) { try await cache.scan("*", count: 0, cursor: 0) }
        }
    }

    @Test("flushAll deletes only keys under the prefix", arguments: Provider.allCases, Mode.allCases)
    func flushAllScope(provider: Provider, mode: Mode) async throws {
        let made = try provider.makeBoth()
        let cache = mode.drive(made)
        let neighbour: any AsyncCacheProvider
        switch provider {
        case .redis, .redisTLS, .redisSentinel, .redisCluster, .redisNear: neighbour = mode.drive(try RedisCacheAdapter(client: (made as! RedisCacheAdapter).rawClient, keyPrefix: "bctest:\(UUID().uuidString):"))
        case .memory: neighbour = cache
        }
        try await neighbour.set("survivor", 1)
        for index in 0..<1200 { try await cache.set("doomed\(index)", index) }
        if provider != .memory {
            #expect(try await cache.flushAll() == 1200)
            #expect(try await neighbour.get("survivor") == 1)
            _ = try await neighbour.flushAll()
        } else {
            #expect(try await cache.flushAll() == 1201)
        }
        #expect(try await cache.keys() == [])
        await cache.close()
    }

    @Test("locks: exclusive, released by their owner only, extended by adding or replacing", arguments: Provider.allCases, Mode.allCases)
    func locks(provider: Provider, mode: Mode) async throws {
        try await withProvider(provider, mode) { cache async throws in
            let first = cache.getLock("job", timeout: .seconds(10))
            let second = cache.getLock("job", timeout: .seconds(10))
            #expect(first.owner != second.owner)
            #expect(try await first.acquire(blocking: false))
            #expect(try await !second.acquire(blocking: false))
            #expect(try await !second.acquire(blocking: true, timeout: .milliseconds(150)))
            #expect(try await first.locked())
            #expect(try await first.owned())
            #expect(try await second.locked())
            #expect(try await !second.owned())
            let notOwned = await #expect(throws: RedisError.self) { try await second.release() }
            #expect(notOwned?.code == .lockNotOwned)
            await #expect(throws: RedisError.self) { try await second.extend(by: .seconds(5)) }
            try await first.extend(to: .seconds(30))
            #expect((25...30).contains(try await seconds(cache.lifetime(of: "job"))))
            try await first.extend(by: .seconds(30))
            #expect((55...60).contains(try await seconds(cache.lifetime(of: "job"))))
            try await first.release()
            #expect(try await !first.locked())
            await #expect(throws: RedisError.self) { try await first.release() }
            #expect(try await second.acquire(blocking: false))
            try await second.release()
        }
    }

    @Test("a lock that expired and was taken over is not released by its old holder", arguments: Provider.allCases, Mode.allCases)
    func expiredLock(provider: Provider, mode: Mode) async throws {
        try await withProvider(provider, mode) { cache async throws in
            let old = cache.getLock("lease", timeout: .milliseconds(100))
            let new = cache.getLock("lease", timeout: .seconds(10))
            #expect(try await old.acquire(blocking: false))
            #expect(try await new.acquire(blocking: true, timeout: .seconds(10)))
            let error = await #expect(throws: RedisError.self) { try await old.release() }
            #expect(error?.code == .lockNotOwned)
            #expect(try await new.owned())
            try await new.release()
        }
    }

    @Test("withLock releases on success and on throw, and reports a lock it could not get", arguments: Provider.allCases, Mode.allCases)
    func withLock(provider: Provider, mode: Mode) async throws {
        struct Boom: Error {}
        try await withProvider(provider, mode) { cache async throws in
            let lock = cache.getLock("scoped", timeout: .seconds(10), blockingTimeout: .milliseconds(100))
            #expect(try await lock.withLock { try await lock.owned() })
            #expect(try await !lock.locked())
            await #expect(throws: Boom.self) { try await lock.withLock { () async throws -> Void in throw Boom() } }
            #expect(try await !lock.locked())
            let holder = cache.getLock("scoped", timeout: .seconds(10))
            try await holder.acquire()
            let error = await #expect(throws: RedisError.self) { try await lock.withLock { () async in } }
            #expect(error?.code == .lockNotAcquired)
            try await holder.release()
        }
    }

    @Test("after close() every call fails with .closed and healthCheck is false", arguments: Provider.allCases, Mode.allCases)
    func closed(provider: Provider, mode: Mode) async throws {
        let cache = mode.drive(try provider.makeBoth())
        #expect(await cache.healthCheck())
        await cache.close()
        await cache.close()
        #expect(await !cache.healthCheck())
        let error = await #expect(throws: RedisError.self) { try await cache.get("k") }
        #expect(error?.code == .closed)
    }
}

@Suite("Async API and task-locals")
struct AsyncTaskLocalTests {
    @Test("SyntheticMode reaches every async entry point: each synthetic-scope write lands on the xtest: key, not the production one")
    func syntheticModeThroughAsyncCalls() async throws {
        let cache = try RedisCacheAdapter(url: TestEnvironment.url())
        defer { cache.close() }
        let name = "bctest:synthetic:\(UUID().uuidString):"
        let client = cache.rawClient
        try await SyntheticMode.run {
            try await cache.set(name + "set", "synthetic", ttl: .seconds(60))
            #expect(try await cache.setnx(name + "setnx", 1, ttl: .seconds(60)))
            try await cache.incr(name + "incr")
            try await cache.mset([name + "mset": 1] as [String: JSONValue], ttl: .seconds(60))
            try await cache.hset(name + "hset", field: "f", 1)
            try await cache.pushLimit(name + "push", 1, maxLength: 2, ttl: .seconds(60))
            try await cache.set(name + "cas", ["s": "a"] as JSONValue, ttl: .seconds(60))
            #expect(try await cache.casDictField(name + "cas", field: "s", expected: "a", newValue: ["s": "b"] as JSONValue, ttl: .seconds(60)))
            _ = try await cache.getOrSet(name + "getOrSet", ttl: .seconds(60)) { "computed" }
            try await cache.getLock(name + "lock").withLock { () async throws in
                #expect(try await client.send("EXISTS", RedisArgument("xtest:baldur:" + name + "lock")) == .integer(1))
            }
            #expect(try await cache.get(name + "set") == "synthetic")
            let written = Set(["set", "setnx", "incr", "mset", "hset", "push", "cas", "getOrSet"].map { name + $0 })
            #expect(Set(try await cache.keys(name + "*")).isSuperset(of: written))
        }
        for suffix in ["set", "setnx", "incr", "mset", "hset", "push", "cas", "getOrSet"] {
            #expect(try await client.send("EXISTS", RedisArgument("xtest:baldur:" + name + suffix)) == .integer(1), "\(suffix)")
            #expect(try await client.send("EXISTS", RedisArgument("baldur:" + name + suffix)) == .integer(0), "\(suffix)")
        }
        #expect(try await cache.keys(name + "*") == [])
        try await SyntheticMode.run { _ = try await cache.flushAll() }
    }

    @Test("two tasks hand a lock over: the waiter gets it when the holder releases, not at expiry", arguments: Provider.allCases)
    func lockHandoffBetweenTasks(provider: Provider) async throws {
        try await withProvider(provider, .async) { cache async throws in
            // The holder's lock lives 120 s and the waiter waits at most 60 s:
            // the waiter can only get it through the release.
            let holder = cache.getLock("handoff", timeout: .seconds(120))
            let waiter = cache.getLock("handoff", timeout: .seconds(30), blockingTimeout: .seconds(60))
            #expect(try await holder.acquire(blocking: false))
            let waiting = Task { try await waiter.acquire() }
            try await Task.sleep(for: .milliseconds(300))
            try await holder.release()
            #expect(try await waiting.value)
            #expect(try await waiter.owned())
            try await waiter.release()
        }
    }

    @Test("many tasks waiting on one lock take turns, each holding it alone", arguments: Provider.allCases)
    func lockMutualExclusionAcrossTasks(provider: Provider) async throws {
        try await withProvider(provider, .async) { cache async throws in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        try await cache.getLock("turns", timeout: .seconds(10), blockingTimeout: .seconds(20)).withLock {
                            let inside = try await cache.incr("inside")
                            #expect(inside == 1)
                            try await Task.sleep(for: .milliseconds(5))
                            try await cache.decr("inside")
                            try await cache.incr("done")
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await cache.get("done") == 20)
        }
    }

    @Test("getOrSet from concurrent tasks runs the factory once", arguments: Provider.allCases)
    func asyncGetOrSetRunsFactoryOnce(provider: Provider) async throws {
        try await withProvider(provider, .async) { cache async throws in
            let calls = Counter()
            let values = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<50 {
                    group.addTask {
                        try await cache.getOrSet("expensive", as: Int.self, ttl: .seconds(60)) {
                            calls.value.add(1, ordering: .relaxed)
                            try await Task.sleep(for: .milliseconds(100))
                            return 42
                        }
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(values == Array(repeating: 42, count: 50))
            #expect(calls.value.load(ordering: .relaxed) == 1)
        }
    }
}

@Suite("Redlock, async")
struct AsyncRedlockTests {
    @Test("an async Redlock takes a quorum, excludes a second holder until released, and releases on every master")
    func asyncRedlockQuorumAndRelease() async throws {
        // Three databases of the test server stand in for three independent masters.
        let base = try TestEnvironment.url()
        let root = String(base[..<base.lastIndex(of: "/")!])
        let urls = (1...3).map { "\(root)/\($0)" }
        let key = "bctest:redlock:\(UUID().uuidString)"
        // Node timeouts of 2 s (not the URL form's 100 ms): this suite runs
        // beside others on 2 CPUs, and a lost release would look like a bug.
        func clients() throws -> [RedisClient] {
            try urls.map { url in
                var configuration = try RedisConfiguration(url: url)
                configuration.commandTimeout = .seconds(2)
                configuration.connectTimeout = .seconds(2)
                return try RedisClient(configuration: configuration)
            }
        }
        let first = try Redlock(key: key, ttl: .seconds(30), clients: clients())
        let second = try Redlock(key: key, ttl: .seconds(30), clients: clients())
        defer { first.close(); second.close() }
        let lease = try #require(try await first.acquire())
        #expect(lease.grantedBy == 3)
        #expect(try await second.acquire(attempts: 2, retryDelay: .milliseconds(20)) == nil)
        await first.release()
        for url in urls {
            let client = try RedisClient(url: url)
            #expect(try await client.send("EXISTS", RedisArgument(key)) == .integer(0))
            client.close()
        }
        #expect(try await second.acquire() != nil)
        await second.release()
    }
}

final class Counter: Sendable { let value = Atomic<Int>(0) }

/// The seconds a lifetime has left, rounded to the nearest as `TTL` rounds;
/// -1 for a missing or persistent key, so a range check fails on them.
func seconds(_ lifetime: KeyLifetime) -> Int {
    guard let left = lifetime.timeToLive else { return -1 }
    return Int((left / .milliseconds(1)).rounded() / 1000 + 0.5)
}
