@testable import BaldurCache
import Foundation
import Synchronization
import Testing

/// Swift and Python Baldur sharing one Redis: each reads what the other
/// writes and respects the other's locks.
@Suite("Interop with Python Baldur")
struct InteropTests {
    /// One JSON value of every kind Python writes.
    static let values: [JSONValue] = [
        42, -7, 1.0, -0.5, 0.1, 1e100, true, false, nil, "h\u{e9}llo", "emoji \u{1F680} \"quoted\" \\ back\nslash", "",
        .int(9_223_372_036_854_775_807), .int(-9_223_372_036_854_775_808),
        ["status": "executing", "started_at": 1732640000.5],
        [1, "two", [3.5, nil, ["deep": [true]]]], [], [:],
    ]

    @Test("values of every JSON kind written by Python read back equal in Swift, and the reverse", .ownThread)
    func values() throws {
        let prefix = "bctest:\(UUID().uuidString):"
        let cache = try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: prefix)
        defer { _ = try? cache.flushAll(); cache.close() }

        var writes: [JSONValue] = []
        for (index, value) in Self.values.enumerated() {
            writes.append(["op": "set", "prefix": .string(prefix), "key": .string("py\(index)"), "value": value])
        }
        _ = try PythonPeer.run(writes)
        for (index, value) in Self.values.enumerated() {
            #expect(try cache.get("py\(index)") == value, "python value \(index)")
        }

        for (index, value) in Self.values.enumerated() { try cache.set("sw\(index)", value) }
        let reads = try PythonPeer.run(Self.values.indices.map { index in
            ["op": "get", "prefix": .string(prefix), "key": .string("sw\(index)")]
        })
        for (index, value) in Self.values.enumerated() {
            // Python's get() answers None for a stored JSON null: the reference treats null as a miss.
            #expect(reads[index] == value, "swift value \(index)")
        }

        // The bytes themselves: compact, non-ASCII unescaped, as WIRE.md measured.
        try cache.set("wire", ["s": "h\u{e9}llo", "n": 1.0] as JSONValue)
        #expect(try cache.rawClient.send("GET", RedisArgument(prefix + "wire")).bytes == Array(#"{"n":1.0,"s":"héllo"}"#.utf8))
        let raw = try PythonPeer.run([["op": "set", "prefix": .string(prefix), "key": "pywire", "value": ["s": "h\u{e9}llo"]]])
        #expect(raw == [true])
        #expect(try cache.rawClient.send("GET", RedisArgument(prefix + "pywire")).bytes == Array(#"{"s":"héllo"}"#.utf8))
    }

    @Test("strings are written byte for byte as Python writes them: every control character, quotes, backslashes, escapes at either end", .ownThread)
    func stringBytes() throws {
        let prefix = "bctest:\(UUID().uuidString):"
        let cache = try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: prefix)
        defer { _ = try? cache.flushAll(); cache.close() }
        let controls = String(decoding: (0..<32).map { UInt8($0) } + [0x7F], as: UTF8.self)
        let strings: [JSONValue] = [
            .string(controls), "\"at the start", "at the end\\", "\u{1F680}\"\\\n", "plain ascii",
            .string(String(repeating: "long \u{e9}\t", count: 200)), ["nested \"key\"": ["\u{0}"]],
        ]
        _ = try PythonPeer.run(strings.indices.map { index in
            ["op": "set", "prefix": .string(prefix), "key": .string("py\(index)"), "value": strings[index]]
        })
        for (index, value) in strings.enumerated() {
            try cache.set("sw\(index)", value)
            let python = try cache.rawClient.send("GET", RedisArgument(prefix + "py\(index)")).bytes
            let swift = try cache.rawClient.send("GET", RedisArgument(prefix + "sw\(index)")).bytes
            #expect(swift == python, "value \(index)")
            #expect(try cache.get("py\(index)") == value, "value \(index) read back")
        }
    }

    @Test("Codable structs written by Swift are plain records to Python, and Python records decode into them", .ownThread)
    func codableRecords() throws {
        let prefix = "bctest:\(UUID().uuidString):"
        let cache = try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: prefix)
        defer { _ = try? cache.flushAll(); cache.close() }
        try cache.set("order", Order(id: 1, customer: "Zoë", total: 9.5, tags: ["x"], shipped: true))
        let fromSwift = try PythonPeer.run([
            ["op": "get", "prefix": .string(prefix), "key": "order"],
            ["op": "set", "prefix": .string(prefix), "key": "pyorder",
             "value": ["id": 2, "customer": "Ada", "total": 3.25, "tags": [], "shipped": nil]],
        ])
        #expect(fromSwift[0] == ["id": 1, "customer": "Zoë", "total": 9.5, "tags": ["x"], "shipped": true])
        #expect(try cache.get("pyorder", as: Order.self) == Order(id: 2, customer: "Ada", total: 3.25, tags: [], shipped: nil))
    }

    @Test("hashes, bounded lists and counters are shared both ways", .ownThread)
    func structures() throws {
        let prefix = "bctest:\(UUID().uuidString):"
        let p = JSONValue.string(prefix)
        let cache = try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: prefix)
        defer { _ = try? cache.flushAll(); cache.close() }

        _ = try PythonPeer.run([
            ["op": "hset", "prefix": p, "name": "h", "field": "py", "value": ["n": 1]],
            ["op": "push_limit", "prefix": p, "key": "l", "value": "p1", "max_len": 3],
            ["op": "push_limit", "prefix": p, "key": "l", "value": ["p": 2], "max_len": 3],
            ["op": "incr", "prefix": p, "key": "c", "amount": 5],
        ])
        try cache.hset("h", field: "swift field ✓", [true, nil] as JSONValue)
        #expect(try cache.pushLimit("l", 3.5, maxLength: 3) == 3)
        #expect(try cache.pushLimit("l", "s4", maxLength: 3, ttl: .seconds(60)) == 4)
        #expect(try cache.incr("c", by: 2) == 7)
        #expect(try cache.decr("c") == 6)

        let seen = try PythonPeer.run([
            ["op": "hgetall", "prefix": p, "name": "h"],
            ["op": "hget", "prefix": p, "name": "h", "field": "swift field ✓"],
            ["op": "list_range", "prefix": p, "key": "l", "start": 0, "end": -1],
            ["op": "push_limit", "prefix": p, "key": "l", "value": "p5", "max_len": 3],
            ["op": "get", "prefix": p, "key": "c"],
            ["op": "decr", "prefix": p, "key": "c", "amount": 10],
        ])
        #expect(seen[0] == ["py": ["n": 1], "swift field ✓": [true, nil]])
        #expect(seen[1] == [true, nil])
        #expect(seen[2] == [["p": 2], 3.5, "s4"])
        #expect(seen[3] == 4)
        #expect(seen[4] == 6)
        #expect(seen[5] == -4)
        #expect(try cache.listRange("l") == [3.5, "s4", "p5"])
        #expect(try cache.hgetall("h") == ["py": ["n": 1], "swift field ✓": [true, nil]])
        #expect(try cache.get("c") == -4)
    }

    @Test("casDictField and casTakeover work from each side on records the other wrote", .ownThread)
    func compareAndSet() throws {
        let prefix = "bctest:\(UUID().uuidString):"
        let p = JSONValue.string(prefix)
        let cache = try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: prefix)
        defer { _ = try? cache.flushAll(); cache.close() }
        let now = 1_732_640_000.5

        _ = try PythonPeer.run([
            ["op": "set", "prefix": p, "key": "dedup", "value": ["status": "pending", "attempt": 1]],
            ["op": "set", "prefix": p, "key": "failed", "value": ["status": "failed", "started_at": .double(now - 10)]],
        ])
        #expect(try !cache.casDictField("dedup", field: "status", expected: "done", newValue: ["status": "x"] as JSONValue))
        #expect(try cache.casDictField("dedup", field: "status", expected: "pending", newValue: ["status": "claimed", "by": "swift"] as JSONValue, ttl: .seconds(60)))
        #expect(try cache.casTakeover("failed", newRecord: ["status": "executing", "started_at": .double(now)] as JSONValue, staleBefore: now - 60))

        try cache.set("stale", ["status": "executing", "started_at": .double(now - 600)] as JSONValue)
        let python = try PythonPeer.run([
            ["op": "cas_dict_field", "prefix": p, "key": "dedup", "field": "status", "expected": "pending", "new_value": ["status": "py"]],
            ["op": "cas_dict_field", "prefix": p, "key": "dedup", "field": "status", "expected": "claimed", "new_value": ["status": "done", "by": "python"], "ttl": 30],
            ["op": "cas_takeover", "prefix": p, "key": "stale", "new_record": ["status": "executing", "started_at": .double(now)], "stale_before": .double(now - 60)],
            ["op": "cas_takeover", "prefix": p, "key": "stale", "new_record": ["status": "executing", "started_at": .double(now)], "stale_before": .double(now - 60)],
            ["op": "get", "prefix": p, "key": "failed"],
        ])
        #expect(python == [false, true, true, false, ["status": "executing", "started_at": .double(now)]])
        #expect(try cache.get("dedup") == ["status": "done", "by": "python"])
        #expect(try !cache.casTakeover("stale", newRecord: ["status": "executing"] as JSONValue, staleBefore: now - 60))
    }

    @Test("the same names give the same storage keys under static, none, dynamic, namespaced and synthetic prefixes", .ownThread)
    func storageKeys() throws {
        let name = "orders:\(UUID().uuidString)"
        let python = try PythonPeer.run([
            ["op": "storage_key", "key": .string(name)],
            ["op": "storage_key", "key": .string(name), "synthetic": true],
            ["op": "storage_key", "key": .string(name), "prefix": ""],
            ["op": "storage_key", "key": .string(name), "prefix": "", "synthetic": true],
            ["op": "storage_key", "key": .string(name), "prefix": "static:"],
            ["op": "storage_key", "key": .string(name), "prefix": "static:", "synthetic": true],
        ])
        let swift: [JSONValue] = [
            .string(KeyPrefix(nil).resolve() + name),
            .string(SyntheticMode.run { KeyPrefix(nil).resolve() } + name),
            .string(KeyPrefix("").resolve() + name),
            .string(SyntheticMode.run { KeyPrefix("").resolve() } + name),
            .string(KeyPrefix("static:").resolve() + name),
            .string(SyntheticMode.run { KeyPrefix("static:").resolve() } + name),
        ]
        #expect(python == swift)
        #expect(swift[0] == .string("baldur:\(name)") && swift[1] == .string("xtest:baldur:\(name)"))

        let environments: [[String: String]] = [
            ["BALDUR_NAMESPACE_NAMESPACE_ENABLED": "true"],
            ["BALDUR_NAMESPACE_NAMESPACE_ENABLED": "true", "BALDUR_NAMESPACE_REGION": "seoul"],
            ["BALDUR_NAMESPACE_NAMESPACE_ENABLED": "true", "BALDUR_NAMESPACE_TENANT": "acme", "BALDUR_NAMESPACE_ENV": "prod"],
            ["BALDUR_NAMESPACE_NAMESPACE_ENABLED": "true", "BALDUR_NAMESPACE_NAMESPACE": "one", "BALDUR_NAMESPACE_REGION": "two"],
            ["BALDUR_NAMESPACE_NAMESPACE_ENABLED": "true", "BALDUR_NAMESPACE_ENV": "staging"],
            ["BALDUR_NAMESPACE_NAMESPACE_ENABLED": "false", "BALDUR_NAMESPACE_REGION": "ignored"],
        ]
        for environment in environments {
            let python = try PythonPeer.run([["op": "storage_key", "key": "k"]], environment: environment)
            #expect(python == [.string(Namespace(environment: environment).keyPrefix + "k")], "\(environment)")
        }
    }

    @Test("a value written in synthetic mode by one side is read in synthetic mode by the other", .ownThread)
    func syntheticScope() throws {
        let name = "bctest:synthetic:\(UUID().uuidString)"
        let cache = try RedisCacheAdapter(url: TestEnvironment.url())
        defer {
            _ = try? cache.rawClient.send("DEL", RedisArgument("xtest:baldur:\(name)"), RedisArgument("baldur:\(name)py"), RedisArgument("xtest:baldur:\(name)py"))
            cache.close()
        }
        try SyntheticMode.run { try cache.set(name, "synthetic") }
        #expect(try cache.get(name) == nil)
        _ = try PythonPeer.run([["op": "set", "key": .string(name + "py"), "value": "py-synthetic", "synthetic": true]])
        let python = try PythonPeer.run([
            ["op": "get", "key": .string(name), "synthetic": true],
            ["op": "get", "key": .string(name)],
        ])
        #expect(python == ["synthetic", nil])
        #expect(try SyntheticMode.run { try cache.get(name + "py") } == "py-synthetic")
        #expect(try cache.get(name + "py") == nil)
    }

    @Test("a lock held by either side keeps the other out and is released only by its owner", .ownThread)
    func locks() throws {
        let prefix = "bctest:\(UUID().uuidString):"
        let p = JSONValue.string(prefix)
        let cache = try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: prefix)
        defer { _ = try? cache.flushAll(); cache.close() }

        // Python holds it.
        // Held across four more peer processes and a Swift wait: a minute, so
        // that slow process starts (ThreadSanitizer, a busy machine) cannot expire it.
        let held = try PythonPeer.run([["op": "lock_acquire", "prefix": p, "name": "job", "timeout_ms": 60000]])[0]
        #expect(held["acquired"] == true)
        #expect(held["key"] == .string(prefix + "job"))
        let swiftLock = cache.getLock("job", timeout: .seconds(60))
        #expect(try !swiftLock.acquire(blocking: false))
        #expect(try swiftLock.locked() && !swiftLock.owned())
        #expect(throws: RedisError.self) { try swiftLock.release() }
        #expect(try swiftLock.locked())
        // Only Python's owner token releases it; a Swift waiter blocked meanwhile gets it
        // through its fallback poll (Python's release sends no signal).
        #expect(try PythonPeer.run([["op": "lock_release_as", "prefix": p, "name": "job", "owner": "someone-else"]]) == [false])
        let waiter = cache.getLock("job", timeout: .seconds(10))
        let waited = DispatchSemaphore(value: 0)
        let gotIt = PlainMutex(false)
        DispatchQueue.global().async {
            gotIt.withLock { $0 = (try? waiter.acquire(blocking: true, timeout: .seconds(5))) ?? false }
            waited.signal()
        }
        #expect(try PythonPeer.run([["op": "lock_release_as", "prefix": p, "name": "job", "owner": held["owner"]!]]) == [true])
        waited.wait()
        #expect(gotIt.withLock { $0 })
        try waiter.release()

        // Swift holds it.
        #expect(try swiftLock.acquire(blocking: false))
        let python = try PythonPeer.run([
            ["op": "lock_acquire", "prefix": p, "name": "job", "timeout_ms": 10000],
            ["op": "lock_acquire", "prefix": p, "name": "job", "timeout_ms": 10000, "blocking": true, "wait": 0.3],
            ["op": "lock_locked", "prefix": p, "name": "job"],
            ["op": "lock_release_as", "prefix": p, "name": "job", "owner": "not-the-swift-owner"],
        ])
        #expect(python[0]["acquired"] == false)
        #expect(python[1]["acquired"] == false)
        #expect(python[2] == true)
        #expect(python[3] == false)
        #expect(try swiftLock.owned())
        try swiftLock.release()
        let after = try PythonPeer.run([["op": "lock_acquire", "prefix": p, "name": "job", "timeout_ms": 10000]])[0]
        #expect(after["acquired"] == true)
        _ = try PythonPeer.run([["op": "lock_release_as", "prefix": p, "name": "job", "owner": after["owner"]!]])
    }
}
