import BaldurCache
import Foundation
import Synchronization
import Testing

/// The two providers the contract is run against.
enum Provider: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case redis, memory

    var testDescription: String { rawValue }

    /// A provider whose keys all live under a fresh literal prefix.
    func make(defaultTTL: Duration? = nil) throws -> any CacheProvider {
        let prefix = "bctest:\(UUID().uuidString):"
        switch self {
        case .redis: return try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: prefix, defaultTTL: defaultTTL)
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

/// Runs `body` with a fresh provider and removes its keys afterwards.
func withProvider(_ provider: Provider, defaultTTL: Duration? = nil, _ body: (any CacheProvider) throws -> Void) throws {
    let cache = try provider.make(defaultTTL: defaultTTL)
    defer {
        _ = try? cache.flushAll()
        cache.close()
    }
    try body(cache)
}

@Suite("CacheProvider contract")
struct CacheContractTests {
    @Test("every JSON kind round-trips through set and get", arguments: Provider.allCases)
    func jsonKinds(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            let values: [JSONValue] = [
                42, -7, 1.0, 0.1, 1e100, true, false, nil, "h\u{e9}llo \u{1F600}", "", "quote \" backslash \\ newline \n nul \u{0}",
                .int(.max), .int(.min), [], [:], [1, "two", [3.5, nil]], ["status": "executing", "started_at": 1732640000.5, "nested": ["a": [true]]],
            ]
            for (index, value) in values.enumerated() {
                try cache.set("v\(index)", value)
                #expect(try cache.get("v\(index)") == value, "value \(index)")
            }
            #expect(try cache.get("missing") == nil)
        }
    }

    @Test("Codable values round-trip and decode errors name the key", arguments: Provider.allCases)
    func codable(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            let order = Order(id: 7, customer: "Zoë", total: 19.5, tags: ["a", "b"], shipped: nil)
            try cache.set("order", order)
            #expect(try cache.get("order", as: Order.self) == order)
            try cache.set("not-an-order", ["id": "seven"] as JSONValue)
            let error = #expect(throws: RedisError.self) { try cache.get("not-an-order", as: Order.self) }
            #expect(error?.code == .decoding)
            #expect(error?.message.contains("not-an-order") == true)
            #expect(error?.message.contains("seven") == false)
        }
    }

    @Test("delete and exists", arguments: Provider.allCases)
    func deleteAndExists(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            try cache.set("k", 1)
            #expect(try cache.exists("k"))
            #expect(try cache.delete("k"))
            #expect(try !cache.exists("k"))
            #expect(try !cache.delete("k"))
        }
    }

    @Test("counters add and subtract, start at 0, read back as JSON integers, and refuse non-integers", arguments: Provider.allCases)
    func counters(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            #expect(try cache.incr("c") == 1)
            #expect(try cache.incr("c", by: 10) == 11)
            #expect(try cache.decr("c") == 10)
            #expect(try cache.decr("c", by: 15) == -5)
            #expect(try cache.get("c") == .int(-5))
            try cache.set("text", "abc")
            let error = #expect(throws: RedisError.self) { try cache.incr("text") }
            #expect(error?.code == .server)
            #expect(error?.message.contains("not an integer") == true)
        }
    }

    @Test("TTLs: set, defaultTTL, expire and ttl tell no-expiry from missing", arguments: Provider.allCases)
    func ttls(provider: Provider) throws {
        try withProvider(provider, defaultTTL: .seconds(100)) { cache in
            try cache.set("default", 1)
            #expect((90...100).contains(try cache.ttl("default") ?? -1))
            try cache.set("explicit", 1, ttl: .seconds(30))
            #expect((25...30).contains(try cache.ttl("explicit") ?? -1))
            try cache.set("fractional", 1, ttl: .milliseconds(1500))
            #expect((1...2).contains(try cache.ttl("fractional") ?? -1))
            #expect(try cache.ttl("missing") == -2)
            #expect(try cache.incr("persistent") == 1)
            #expect(try cache.ttl("persistent") == nil)
            #expect(try cache.expire("persistent", ttl: .seconds(60)))
            #expect((55...60).contains(try cache.ttl("persistent") ?? -1))
            #expect(try !cache.expire("missing", ttl: .seconds(60)))
        }
    }

    @Test("a key set with a short TTL expires", arguments: Provider.allCases)
    func expiry(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            try cache.set("short", "gone soon", ttl: .seconds(1))
            #expect(try cache.exists("short"))
            Thread.sleep(forTimeInterval: 1.3)
            #expect(try cache.get("short") == nil)
            #expect(try cache.ttl("short") == -2)
        }
    }

    @Test("zero, negative and sub-second TTLs are refused clearly", arguments: Provider.allCases)
    func badTTLs(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            for ttl: Duration in [.zero, .seconds(-5), .milliseconds(500)] {
                let setError = #expect(throws: RedisError.self) { try cache.set("k", 1, ttl: ttl) }
                #expect(setError?.code == .invalidArgument)
                #expect(setError?.message.contains("at least 1 second") == true)
                #expect(throws: RedisError.self) { try cache.expire("k", ttl: ttl) }
                #expect(throws: RedisError.self) { try cache.setnx("k", 1, ttl: ttl) }
                #expect(throws: RedisError.self) { try cache.mset(["k": 1], ttl: ttl) }
                #expect(throws: RedisError.self) { try cache.pushLimit("l", 1, maxLength: 3, ttl: ttl) }
            }
            #expect(try !cache.exists("k"))
        }
    }

    @Test("setnx stores only when absent, with its TTL in the same command", arguments: Provider.allCases)
    func setnx(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            #expect(try cache.setnx("claim", ["owner": "a"] as JSONValue, ttl: .seconds(20)))
            #expect(try !cache.setnx("claim", ["owner": "b"] as JSONValue, ttl: .seconds(20)))
            #expect(try cache.get("claim")?["owner"] == "a")
            #expect((15...20).contains(try cache.ttl("claim") ?? -1))
            #expect(try cache.setnx("forever", 1))
            #expect(try cache.ttl("forever") == nil)
        }
    }

    @Test("casDictField compares strings, numbers, booleans and null by type", arguments: Provider.allCases)
    func casDictField(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            try cache.set("r", ["status": "pending", "n": 3, "f": 1.0, "ok": false, "none": nil] as JSONValue)
            #expect(try !cache.casDictField("r", field: "status", expected: "done", newValue: ["status": "x"] as JSONValue))
            #expect(try cache.casDictField("r", field: "status", expected: "pending", newValue: ["status": "claimed", "n": 3, "f": 1.0, "ok": false, "none": nil] as JSONValue))
            #expect(try cache.get("r")?["status"] == "claimed")
            #expect(try !cache.casDictField("r", field: "n", expected: "3", newValue: ["v": 1] as JSONValue))
            #expect(try cache.casDictField("r", field: "n", expected: 3, newValue: ["n": 4, "f": 1.0, "ok": false, "none": nil] as JSONValue))
            #expect(try cache.casDictField("r", field: "f", expected: 1, newValue: ["n": 4, "f": 2.5, "ok": false, "none": nil] as JSONValue))
            #expect(try !cache.casDictField("r", field: "ok", expected: "false", newValue: ["v": 1] as JSONValue))
            #expect(try cache.casDictField("r", field: "ok", expected: false, newValue: ["n": 4, "ok": true, "none": nil] as JSONValue))
            #expect(try cache.casDictField("r", field: "none", expected: nil, newValue: ["n": 5, "ok": true] as JSONValue))
            #expect(try cache.casDictField("r", field: "absent", expected: nil, newValue: ["n": 6] as JSONValue))
            #expect(try !cache.casDictField("r", field: "n", expected: nil, newValue: ["n": 7] as JSONValue))
            #expect(try cache.get("r") == ["n": 6])
        }
    }

    @Test("casDictField: missing key, non-object and scalar JSON are no match; object expected is refused; TTL applies", arguments: Provider.allCases)
    func casDictFieldEdges(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            #expect(try !cache.casDictField("missing", field: "a", expected: nil, newValue: ["a": 1] as JSONValue))
            try cache.set("array", [1, 2] as JSONValue)
            #expect(try !cache.casDictField("array", field: "a", expected: nil, newValue: ["a": 1] as JSONValue))
            try cache.set("scalar", "text")
            #expect(try !cache.casDictField("scalar", field: "a", expected: nil, newValue: ["a": 1] as JSONValue))
            let error = #expect(throws: RedisError.self) {
                try cache.casDictField("array", field: "a", expected: ["x": 1], newValue: ["a": 1] as JSONValue)
            }
            #expect(error?.code == .invalidArgument)
            try cache.set("rec", ["s": "a"] as JSONValue)
            #expect(try cache.casDictField("rec", field: "s", expected: "a", newValue: ["s": "b"] as JSONValue, ttl: .seconds(40)))
            #expect((35...40).contains(try cache.ttl("rec") ?? -1))
            #expect(try cache.casDictField("rec", field: "s", expected: "b", newValue: ["s": "c"] as JSONValue))
            #expect(try cache.ttl("rec") == nil)
        }
    }

    @Test("casTakeover takes failed and stale executing records, once", arguments: Provider.allCases)
    func casTakeover(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            let now = 1_732_640_000.5
            let claim: JSONValue = ["status": "executing", "started_at": .double(now)]
            try cache.set("failed", ["status": "failed"] as JSONValue)
            #expect(try cache.casTakeover("failed", newRecord: claim, staleBefore: now - 60, ttl: .seconds(30)))
            #expect((25...30).contains(try cache.ttl("failed") ?? -1))
            try cache.set("stale", ["status": "executing", "started_at": .double(now - 120)] as JSONValue)
            #expect(try cache.casTakeover("stale", newRecord: claim, staleBefore: now - 60))
            // The fresh claim is not stale: a second taker loses.
            #expect(try !cache.casTakeover("stale", newRecord: claim, staleBefore: now - 60))
            #expect(try cache.get("stale") == claim)
            try cache.set("completed", ["status": "completed", "started_at": 0] as JSONValue)
            #expect(try !cache.casTakeover("completed", newRecord: claim, staleBefore: now))
            try cache.set("no-start", ["status": "executing"] as JSONValue)
            #expect(try !cache.casTakeover("no-start", newRecord: claim, staleBefore: now))
            #expect(try !cache.casTakeover("missing", newRecord: claim, staleBefore: now))
            #expect(throws: RedisError.self) { try cache.casTakeover("failed", newRecord: claim, staleBefore: .nan) }
        }
    }

    @Test("mget omits missing keys; mset stores with and without a TTL; mdelete counts; empty calls are no-ops", arguments: Provider.allCases)
    func bulk(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            try cache.mset(["a": 1, "b": 2] as [String: JSONValue])
            try cache.mset(["c": "three"] as [String: JSONValue], ttl: .seconds(50))
            #expect(try cache.mget(["a", "b", "c", "missing"]) == ["a": 1, "b": 2, "c": "three"])
            #expect(try cache.ttl("a") == nil)
            #expect((45...50).contains(try cache.ttl("c") ?? -1))
            #expect(try cache.mget([]) == [:])
            try cache.mset([String: JSONValue]())
            #expect(try cache.mdelete([]) == 0)
            #expect(try cache.mdelete(["a", "c", "missing"]) == 2)
            #expect(try cache.mget(["a", "b", "c"]) == ["b": 2])
        }
    }

    @Test("hashes: raw field names, JSON values", arguments: Provider.allCases)
    func hashes(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            try cache.hset("h", field: "count", 3)
            try cache.hset("h", field: "naïve field", ["x": [1, 2]] as JSONValue)
            #expect(try cache.hget("h", field: "count") == 3)
            #expect(try cache.hget("h", field: "missing") == nil)
            #expect(try cache.hget("no-hash", field: "count") == nil)
            #expect(try cache.hgetall("h") == ["count": 3, "naïve field": ["x": [1, 2]]])
            #expect(try cache.hgetall("no-hash") == [:])
            try cache.set("string", 1)
            let error = #expect(throws: RedisError.self) { try cache.hget("string", field: "x") }
            #expect(error?.prefix == "WRONGTYPE")
        }
    }

    @Test("pushLimit keeps the last N, returns the pre-trim length, renews the TTL; bad maxLength is refused", arguments: Provider.allCases)
    func pushLimit(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            for index in 1...5 {
                #expect(try cache.pushLimit("events", ["i": .int(Int64(index))] as JSONValue, maxLength: 3, ttl: .seconds(60)) == min(index, 3) + (index > 3 ? 1 : 0))
            }
            #expect(try cache.listRange("events") == [["i": 3], ["i": 4], ["i": 5]])
            #expect(try cache.listRange("events", start: 1, end: 1) == [["i": 4]])
            #expect(try cache.listRange("events", start: -2, end: -1) == [["i": 4], ["i": 5]])
            #expect(try cache.listRange("events", start: 5, end: 10) == [])
            #expect(try cache.listRange("missing") == [])
            #expect((55...60).contains(try cache.ttl("events") ?? -1))
            for bad in [0, -1] {
                let error = #expect(throws: RedisError.self) { try cache.pushLimit("events", 1, maxLength: bad) }
                #expect(error?.code == .invalidArgument)
            }
            #expect(try cache.listRange("events").count == 3)
        }
    }

    @Test("keys and scan return keys without the prefix, unicode and binary-looking keys included", arguments: Provider.allCases)
    func keysAndScan(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            let names = ["plain", "ключ", "with space", "tab\tand\r\nnewline", "nul\u{0}byte", "glob*[chars]?", "emoji 🚀"]
            for name in names { try cache.set(name, name) }
            #expect(Set(try cache.keys()) == Set(names))
            for name in names { #expect(try cache.get(name) == .string(name)) }
            #expect(try cache.keys("pl*") == ["plain"])
            #expect(try cache.keys("glob\\*\\[chars\\]\\?") == ["glob*[chars]?"])
            var seen = Set<String>()
            var cursor: UInt64 = 0
            repeat {
                let page = try cache.scan("*", count: 2, cursor: cursor)
                seen.formUnion(page.keys)
                cursor = page.cursor
            } while cursor != 0
            #expect(seen == Set(names))
            #expect(throws: RedisError.self) { try cache.scan("*", count: 0, cursor: 0) }
        }
    }

    @Test("flushAll deletes only keys under the prefix", arguments: Provider.allCases)
    func flushAllScope(provider: Provider) throws {
        let cache = try provider.make()
        defer { cache.close() }
        let neighbour: any CacheProvider
        switch provider {
        case .redis: neighbour = try RedisCacheAdapter(client: (cache as! RedisCacheAdapter).rawClient, keyPrefix: "bctest:\(UUID().uuidString):")
        case .memory: neighbour = cache
        }
        try neighbour.set("survivor", 1)
        for index in 0..<1200 { try cache.set("doomed\(index)", index) }
        if provider == .redis {
            #expect(try cache.flushAll() == 1200)
            #expect(try neighbour.get("survivor") == 1)
            _ = try neighbour.flushAll()
        } else {
            #expect(try cache.flushAll() == 1201)
        }
        #expect(try cache.keys() == [])
    }

    @Test("locks: exclusive, released by their owner only, extended by adding or replacing", arguments: Provider.allCases)
    func locks(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            let first = cache.getLock("job", timeout: .seconds(10))
            let second = cache.getLock("job", timeout: .seconds(10))
            #expect(first.owner != second.owner)
            #expect(try first.acquire(blocking: false))
            #expect(try !second.acquire(blocking: false))
            #expect(try !second.acquire(blocking: true, timeout: .milliseconds(150)))
            #expect(try first.locked() && first.owned())
            #expect(try second.locked() && !second.owned())
            let notOwned = #expect(throws: RedisError.self) { try second.release() }
            #expect(notOwned?.code == .lockNotOwned)
            #expect(throws: RedisError.self) { try second.extend(by: .seconds(5)) }
            try first.extend(to: .seconds(30))
            #expect((25...30).contains(try cache.ttl("job") ?? -1))
            try first.extend(by: .seconds(30))
            #expect((55...60).contains(try cache.ttl("job") ?? -1))
            try first.release()
            #expect(try !first.locked())
            #expect(throws: RedisError.self) { try first.release() }
            #expect(try second.acquire(blocking: false))
            try second.release()
        }
    }

    @Test("a lock that expired and was taken over is not released by its old holder", arguments: Provider.allCases)
    func expiredLock(provider: Provider) throws {
        try withProvider(provider) { cache throws in
            let old = cache.getLock("lease", timeout: .milliseconds(100))
            let new = cache.getLock("lease", timeout: .seconds(10))
            #expect(try old.acquire(blocking: false))
            #expect(try new.acquire(blocking: true, timeout: .seconds(2)))
            let error = #expect(throws: RedisError.self) { try old.release() }
            #expect(error?.code == .lockNotOwned)
            #expect(try new.owned())
            try new.release()
        }
    }

    @Test("withLock releases on success and on throw, and reports a lock it could not get", arguments: Provider.allCases)
    func withLock(provider: Provider) throws {
        struct Boom: Error {}
        try withProvider(provider) { cache throws in
            let lock = cache.getLock("scoped", timeout: .seconds(10), blockingTimeout: .milliseconds(100))
            #expect(try lock.withLock { try lock.owned() })
            #expect(try !lock.locked())
            #expect(throws: Boom.self) { try lock.withLock { throw Boom() } }
            #expect(try !lock.locked())
            let holder = cache.getLock("scoped", timeout: .seconds(10))
            try holder.acquire()
            let error = #expect(throws: RedisError.self) { try lock.withLock { } }
            #expect(error?.code == .lockNotAcquired)
            try holder.release()
        }
    }

    @Test("after close() every call fails with .closed and healthCheck is false", arguments: Provider.allCases)
    func closed(provider: Provider) throws {
        let cache = try provider.make()
        #expect(cache.healthCheck())
        #expect(cache.ping())
        cache.close()
        cache.close()
        #expect(!cache.healthCheck())
        let error = #expect(throws: RedisError.self) { try cache.get("k") }
        #expect(error?.code == .closed)
    }
}

@Suite("Async offload")
struct AsyncOffloadTests {
    @Test("offload runs calls off the cooperative pool and returns their results and errors", arguments: Provider.allCases)
    func offload(provider: Provider) async throws {
        let cache = try provider.make()
        defer { _ = try? cache.flushAll(); cache.close() }
        try await cache.offload { try $0.set("k", 41) }
        #expect(try await cache.offload { try $0.incr("k") } == 42)
        await #expect(throws: RedisError.self) { try await cache.offload { try $0.get("k", as: [String].self) } }
        // 32 offloaded calls that each block until all 32 are running at once: impossible
        // on the cooperative pool (one thread per core), so they must run on threads of their own.
        final class Counter: Sendable { let value = Atomic<Int>(0) }
        let running = Counter()
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<32 {
                group.addTask {
                    try await cache.offload { cache in
                        _ = try cache.incr("many")
                        running.value.add(1, ordering: .relaxed)
                        let deadline = ContinuousClock.now + .seconds(10)
                        while running.value.load(ordering: .relaxed) < 32, ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.001) }
                        return running.value.load(ordering: .relaxed) == 32
                    }
                }
            }
            var results: [Bool] = []
            for try await value in group { results.append(value) }
            #expect(results == Array(repeating: true, count: 32))
        }
        #expect(try await cache.offload { try $0.get("many") } == 32)
    }

    @Test("offload carries the task's synthetic mode: a synthetic-scope write lands on the xtest: key, not the production one")
    func offloadKeepsSyntheticMode() async throws {
        let cache = try RedisCacheAdapter(url: TestEnvironment.url())
        defer { cache.close() }
        let name = "bctest:offload:\(UUID().uuidString)"
        try await SyntheticMode.run {
            try await cache.offload { try $0.set(name, "synthetic", ttl: .seconds(60)) }
        }
        #expect(try cache.rawClient.send("GET", RedisArgument("xtest:baldur:" + name)).string == #""synthetic""#)
        #expect(try cache.rawClient.send("EXISTS", RedisArgument("baldur:" + name)) == .integer(0))
        try cache.rawClient.send("DEL", RedisArgument("xtest:baldur:" + name))
    }
}
