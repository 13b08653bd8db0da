import BaldurCache
import Foundation
import Testing

/// The calls that take a closure, from the main actor (a `@main` type's
/// `main()` and top-level code run there): the closures are `sending`, so
/// this compiles in Swift 6 mode. Before, each call was "sending value of
/// non-Sendable type ... risks causing data races", which the README's own
/// example hit.
@Suite("Called from the main actor")
@MainActor
struct MainActorCallerTests {
    struct Report: Codable, Sendable, Equatable { var total: Int }

    @Test("getOrSet, withLock and withConnection take closures written on the main actor")
    func closuresFromTheMainActor() async throws {
        let cache = try RedisCacheAdapter(url: TestEnvironment.url(), keyPrefix: "bctest:\(UUID().uuidString):")
        defer { cache.close() }
        let report = try await cache.getOrSet("report", as: Report.self, ttl: .seconds(60)) { Report(total: 42) }
        #expect(report == Report(total: 42))
        let counted = try await cache.getLock("job", timeout: .seconds(10), blockingTimeout: .seconds(5)).withLock {
            try await cache.incr("job:count")
        }
        #expect(counted == 1)
        let pong = try await cache.rawClient.withConnection { connection in try await connection.send(["PING"]) }
        #expect(pong == .status("PONG"))
        _ = try await cache.flushAll()
    }
}
