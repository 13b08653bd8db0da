import BaldurCache
import Foundation
import Testing

/// Adapters take the caller's `JSONEncoder`/`JSONDecoder` for `Codable`
/// types; `JSONValue` keeps Baldur's bytes whatever is passed.
@Suite("Injected JSON coders")
struct JSONCodersTests {
    struct Visit: Codable, Equatable {
        let userId: Int
        let seenAt: Date
    }

    static let snakeCaseEpochSeconds: JSONCoders = {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.dateEncodingStrategy = .secondsSince1970
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        decoder.dateDecodingStrategy = .secondsSince1970
        return JSONCoders(encoder: encoder, decoder: decoder)
    }()

    let visit = Visit(userId: 7, seenAt: Date(timeIntervalSince1970: 1_732_640_000))

    @Test("a Codable value is stored and read with the coders passed to the Redis adapter")
    func redisAdapterUsesTheInjectedCoders() throws {
        let prefix = "bctest:\(UUID().uuidString):"
        let cache = try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: prefix, jsonCoders: Self.snakeCaseEpochSeconds)
        defer { _ = try? cache.flushAll(); cache.close() }

        try cache.set("visit", visit)
        let stored = try #require(try cache.rawClient.send("GET", RedisArgument(prefix + "visit")).string)
        #expect(stored.contains(#""user_id":7"#) && stored.contains(#""seen_at":1732640000"#), "\(stored)")
        #expect(try cache.get("visit", as: Visit.self) == visit)
        try cache.mset(["a": visit, "b": visit])
        #expect(try cache.mget(["a", "b"], as: Visit.self) == ["a": visit, "b": visit])
        try cache.hset("h", field: "f", visit)
        #expect(try cache.hgetall("h", as: Visit.self) == ["f": visit])

        // Baldur's default coders cannot read it: they expect the keys as written.
        let defaultCoders = try RedisCacheAdapter(client: cache.rawClient, keyPrefix: prefix)
        #expect(throws: RedisError.self) { try defaultCoders.get("visit", as: Visit.self) }

        // JSONValue never goes through the coders: still Python Baldur's bytes.
        try cache.set("record", ["camelCase": 1, "when": "2024-11-26"] as JSONValue)
        #expect(try cache.rawClient.send("GET", RedisArgument(prefix + "record")).string == #"{"camelCase":1,"when":"2024-11-26"}"#)
    }

    @Test("the async API uses the same coders")
    func asyncAdapterUsesTheInjectedCoders() async throws {
        let prefix = "bctest:\(UUID().uuidString):"
        let cache = try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: prefix, jsonCoders: Self.snakeCaseEpochSeconds)
        defer { cache.close() }
        try await cache.set("visit", visit, ttl: .seconds(60))
        let stored = try #require(try await cache.rawClient.send("GET", RedisArgument(prefix + "visit")).string)
        #expect(stored.contains(#""user_id":7"#), "\(stored)")
        #expect(try await cache.get("visit", as: Visit.self) == visit)
        try await cache.mset(["a": visit, "b": visit], ttl: .seconds(60))
        #expect(try await cache.mget(["a", "b"], as: Visit.self) == ["a": visit, "b": visit])
    }

    @Test("the in-memory twin takes the same coders")
    func inMemoryAdapterUsesTheInjectedCoders() throws {
        let cache = try InMemoryCacheAdapter(keyPrefix: "", jsonCoders: Self.snakeCaseEpochSeconds)
        try cache.set("visit", visit)
        #expect(try cache.get("visit", as: Visit.self) == visit)
        let stored = try #require(try cache.get("visit")?.jsonString())
        #expect(stored.contains(#""user_id":7"#) && stored.contains(#""seen_at":1732640000"#), "\(stored)")
    }
}
