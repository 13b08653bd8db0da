import BaldurCache
import Foundation
import Testing

@Suite("RedisCacheAdapter on Redis")
struct RedisAdapterTests {
    @Test("each script's local SHA-1 is the one SCRIPT LOAD reports", .ownThread)
    func scriptHashes() throws {
        let client = try TestEnvironment.client()
        defer { client.close() }
        for source in ["return 1", "", String(repeating: "-- long comment\n", count: 40) + "return {1,2}"] {
            let script = LuaScript(source)
            #expect(try client.send("SCRIPT", "LOAD", RedisArgument(source)).string == script.sha1)
        }
    }

    @Test("after SCRIPT FLUSH or a server restart the NOSCRIPT reply is recovered in the same call", .ownThread)
    func noscriptRecovery() throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        let cache = try RedisCacheAdapter(url: server.url, keyPrefix: "")
        defer { cache.close() }
        try cache.set("rec", ["status": "a"] as JSONValue)
        #expect(try cache.casDictField("rec", field: "status", expected: "a", newValue: ["status": "b"] as JSONValue))

        try cache.rawClient.send("SCRIPT", "FLUSH")
        try cache.rawClient.send("CONFIG", "RESETSTAT")
        #expect(try cache.casDictField("rec", field: "status", expected: "b", newValue: ["status": "c"] as JSONValue))
        let stats = try cache.rawClient.send("INFO", "commandstats").string ?? ""
        #expect(stats.contains("cmdstat_evalsha:calls=1"))
        #expect(stats.contains("cmdstat_eval:calls=1"))
        // EVAL cached the script: the next call is a single EVALSHA again.
        #expect(try cache.casDictField("rec", field: "status", expected: "c", newValue: ["status": "d"] as JSONValue))
        #expect((try cache.rawClient.send("INFO", "commandstats").string ?? "").contains("cmdstat_evalsha:calls=2"))

        server.kill()
        try server.start()
        try cache.set("rec", ["status": "after-restart"] as JSONValue)
        #expect(try cache.pushLimit("list", 1, maxLength: 2) == 1)
        #expect(try cache.casDictField("rec", field: "status", expected: "after-restart", newValue: ["status": "e"] as JSONValue))
    }

    @Test("mset with a TTL sends many records in chunks and sets them all; one bad value fails the call before anything is written", .ownThread)
    func msetChunks() throws {
        let prefix = "bctest:\(UUID().uuidString):"
        let cache = try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: prefix)
        defer { _ = try? cache.flushAll(); cache.close() }
        var records: [String: JSONValue] = [:]
        for index in 0..<600 { records["k\(index)"] = ["index": .int(Int64(index)), "pad": .string(String(repeating: "x", count: index % 200))] }
        try cache.mset(records, ttl: .seconds(60))
        let read = try cache.mget(Array(records.keys), as: JSONValue.self)
        #expect(read == records)
        #expect(try cache.lifetime(of: "k599").timeToLive.map { $0 > .zero && $0 <= .seconds(60) } == true)

        var bad = records.mapValues { _ in JSONValue.int(0) }.reduce(into: [String: JSONValue]()) { result, entry in
            result["bad:" + entry.key] = entry.value
        }
        bad["bad:k300"] = ["nested": [.double(.nan)]]
        let error = #expect(throws: RedisError.self) { try cache.mset(bad, ttl: .seconds(60)) }
        #expect(error?.code == .invalidArgument)
        #expect(try cache.mget(Array(bad.keys), as: JSONValue.self).isEmpty)
    }

    @Test("a value that is not JSON gives a decoding error naming the key, never a crash or a wrong value", .ownThread)
    func thirdPartyValues() throws {
        let prefix = "bctest:\(UUID().uuidString):"
        let cache = try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: prefix)
        defer { _ = try? cache.flushAll(); cache.close() }
        let raw = cache.rawClient
        try raw.send("SET", RedisArgument(prefix + "text"), "plain words")
        try raw.send("SET", RedisArgument(prefix + "binary"), .bytes([0xFF, 0xFE, 0x00, 0x7B]))
        try raw.send("SET", RedisArgument(prefix + "nan"), "NaN")
        try raw.send("HSET", RedisArgument(prefix + "hash"), "f", "{broken")
        try raw.send("RPUSH", RedisArgument(prefix + "list"), "1", "not json")
        for key in ["text", "binary", "nan"] {
            let error = #expect(throws: RedisError.self) { try cache.get(key) }
            #expect(error?.code == .decoding)
            #expect(error?.message.contains("'\(key)'") == true)
            #expect(error?.message.contains("plain words") == false)
        }
        #expect(throws: RedisError.self) { try cache.mget(["text"]) }
        #expect(throws: RedisError.self) { try cache.hget("hash", field: "f") }
        #expect(throws: RedisError.self) { try cache.hgetall("hash") }
        let listError = #expect(throws: RedisError.self) { try cache.listRange("list") }
        #expect(listError?.message.contains("list[1]") == true)
        // The scripts treat such values as "no match" instead of raising a Lua error.
        #expect(try !cache.casDictField("text", field: "a", expected: nil, newValue: ["a": 1] as JSONValue))
        #expect(try !cache.casTakeover("binary", newRecord: ["a": 1] as JSONValue, staleBefore: 1))
        // A counter is a plain integer and reads back as a JSON number.
        try raw.send("SET", RedisArgument(prefix + "counter"), "12")
        #expect(try cache.get("counter") == 12)
    }

    @Test("the default dynamic prefix writes baldur:<key>; an empty prefix writes the key itself", .ownThread)
    func prefixesOnTheWire() throws {
        let name = "bctest:\(UUID().uuidString)"
        let dynamic = try RedisCacheAdapter(url: TestEnvironment.url())
        let none = try RedisCacheAdapter(client: dynamic.rawClient, keyPrefix: "")
        defer {
            _ = try? dynamic.rawClient.send("DEL", RedisArgument("baldur:\(name)"), RedisArgument(name), RedisArgument("xtest:baldur:\(name)"))
            dynamic.close()
        }
        try dynamic.set(name, 1)
        try none.set(name, 2)
        try SyntheticMode.run { try dynamic.set(name, 3) }
        #expect(try dynamic.rawClient.send("GET", RedisArgument("baldur:\(name)")).string == "1")
        #expect(try dynamic.rawClient.send("GET", RedisArgument(name)).string == "2")
        #expect(try dynamic.rawClient.send("GET", RedisArgument("xtest:baldur:\(name)")).string == "3")
        #expect(try none.keys("bctest:*").contains(name))
    }

    @Test("a lock's key is resolved when the lock is made and does not shift with synthetic mode", .ownThread)
    func lockKeyResolvedOnce() throws {
        let cache = try RedisCacheAdapter(url: TestEnvironment.url())
        defer { cache.close() }
        let name = "bctest:lock:\(UUID().uuidString)"
        let lock = cache.getLock(name)
        #expect(lock.key == "baldur:\(name)")
        try SyntheticMode.run {
            try lock.acquire(blocking: false)
            #expect(cache.getLock(name).key == "xtest:baldur:\(name)")
        }
        #expect(try cache.rawClient.send("GET", RedisArgument("baldur:\(name)")).string == lock.owner)
        try lock.release()
    }

    @Test("with no URL the adapter reads BALDUR_REDIS_URL", .ownThread)
    func urlFromEnvironment() throws {
        #expect(try TestEnvironment.value("BALDUR_REDIS_URL") == TestEnvironment.url())
        let cache = try RedisCacheAdapter(keyPrefix: "bctest:env:")
        defer { cache.close() }
        #expect(cache.healthCheck())
        #expect(try cache.rawClient.configuration.description == TestEnvironment.configuration().description)
    }

    @Test("an injected client wins over the URL, and the overrides apply to a made client", .ownThread)
    func injectedClient() throws {
        let client = try TestEnvironment.client()
        let cache = try RedisCacheAdapter(url: "redis://127.0.0.1:1/0", client: client, keyPrefix: "bctest:")
        #expect(cache.rawClient === client)
        #expect(cache.providerName == "redis")
        let made = try RedisCacheAdapter(url: "redis://127.0.0.1:1/0", commandTimeout: .milliseconds(250), socketConnectTimeout: .seconds(1), retryOnTimeout: false)
        #expect(made.rawClient.configuration.commandTimeout == .milliseconds(250))
        #expect(made.rawClient.configuration.connectTimeout == .seconds(1))
        #expect(!made.rawClient.configuration.retry.onTimeout)
        #expect(!made.healthCheck())
        client.close()
    }

    @Test("failures are logged with the operation and key, never the value or the password", .ownThread)
    func logging() throws {
        let capture = LogCapture()
        let password = try TestEnvironment.value("BALDUR_TEST_REDIS_AUTH_PASSWORD")
        let port = try TestEnvironment.value("BALDUR_TEST_REDIS_AUTH_PORT")
        let prefix = "bctest:\(UUID().uuidString):"
        let cache = try RedisCacheAdapter(url: "redis://:\(password)@127.0.0.1:\(port)/0", keyPrefix: prefix, logger: capture.logger())
        defer { _ = try? cache.flushAll(); cache.close() }
        try cache.set("secret-record", ["card": "4111-1111-1111-1111"] as JSONValue)
        try cache.rawClient.send("SET", RedisArgument(prefix + "broken"), "secret-garbage")
        #expect(throws: RedisError.self) { try cache.get("broken") }
        #expect(throws: RedisError.self) { try cache.incr("secret-record") }
        try cache.reconnect()

        let records = capture.all
        let failures = records.filter { $0.message == "redis cache operation failed" }
        #expect(failures.map { $0.metadata["operation"] } == ["get", "incr"])
        #expect(failures.map { $0.metadata["key"] } == ["broken", "secret-record"])
        #expect(failures.allSatisfy { $0.level == .debug })
        #expect(records.contains { $0.level == .info && $0.fullText.contains("***") })
        for record in records {
            #expect(!record.fullText.contains(password))
            #expect(!record.fullText.contains("4111"))
            #expect(!record.fullText.contains("secret-garbage"))
        }
    }
}
