@testable import BaldurCache
import Foundation
import Logging
import Testing

/// What an operator must see at `.warning`: connect back-off, a lost lock,
/// a near-cache outage (a Sentinel failover is logged at `.warning` too, by
/// the failover tests' router). Never a value or a password.
@Suite("Warnings in the log", .serialized)
struct WarningLogTests {
    /// A client of a port nothing listens on, with a password the log must never show.
    private func refusingClient(_ capture: LogCapture) throws -> (client: RedisClient, port: Int) {
        let port = try freeLoopbackPort()
        var configuration = try RedisConfiguration(url: "redis://:hunter2@127.0.0.1:\(port)/0")
        configuration.connectTimeout = .milliseconds(200)
        return (try RedisClient(configuration: configuration, logger: capture.logger(level: .warning)), port)
    }

    /// One warning, when the back-off started, naming the address; the password nowhere.
    private func expectOneBackOffWarning(_ capture: LogCapture, port: Int) {
        let warnings = capture.all.filter { $0.level == .warning }
        #expect(warnings.count == 1, "\(warnings.map(\.fullText))")
        #expect(warnings.first?.fullText.contains("backing off") == true)
        #expect(warnings.first?.fullText.contains("127.0.0.1:\(port)") == true)
        #expect(!capture.all.contains { $0.fullText.contains("hunter2") })
    }

    @Test("connects failing in a row: one warning when the back-off starts, naming the address, without the password", .ownThread)
    func connectBackOffIsAWarning() throws {
        let capture = LogCapture()
        let (client, port) = try refusingClient(capture)
        defer { client.close() }
        for _ in 0..<4 { _ = try? client.send("PING") }
        expectOneBackOffWarning(capture, port: port)
    }

    @Test("the async API's failing connects warn once too, as the blocking pool does, without the password")
    func asyncConnectBackOffIsAWarning() async throws {
        let capture = LogCapture()
        let (client, port) = try refusingClient(capture)
        defer { client.close() }
        for _ in 0..<4 { _ = try? await client.send("PING") }
        expectOneBackOffWarning(capture, port: port)
    }

    @Test("a lock lost while it was renewed is a warning naming the lock", .ownThread)
    func lostLockIsAWarning() throws {
        let capture = LogCapture()
        let client = try RedisClient(configuration: RedisConfiguration(url: TestEnvironment.url()), logger: capture.logger(level: .warning))
        let cache = try RedisCacheAdapter(client: client, keyPrefix: "bctest:\(UUID().uuidString):")
        defer { cache.close() }
        let lock = cache.getLock("renewed", timeout: .milliseconds(300))
        #expect(try lock.acquire(blocking: false))
        try lock.startAutoRenewal(every: .milliseconds(50))
        _ = try client.send("DEL", RedisArgument(cache.keyPrefix.resolve() + "renewed"))
        // The renewal marks the lock lost, then logs: wait for both.
        let deadline = ContinuousClock.now + .seconds(10)
        func lostWarnings() -> [LogCapture.Record] { capture.all.filter { $0.level == .warning && $0.fullText.contains("lock lost") } }
        while lock.lostError == nil || lostWarnings().isEmpty, ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.01) }
        Thread.sleep(forTimeInterval: 0.1)  // two renewal ticks: room for a second warning, were one logged
        let warnings = lostWarnings()
        #expect(warnings.count == 1, "\(capture.all.map(\.fullText))")
        #expect(warnings.first?.fullText.contains("renewed") == true)
    }

    @Test("the near cache losing its tracking connection is a warning", .ownThread)
    func nearCacheOutageIsAWarning() throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        let capture = LogCapture()
        let cache = try RedisCacheAdapter(url: server.url, keyPrefix: "bctest:", logger: capture.logger(level: .warning), nearCache: NearCacheConfiguration())
        defer { cache.close() }
        try NearCacheTests.waitUntilTracking(cache)
        let admin = try RedisClient(url: server.url)
        defer { admin.close() }
        _ = try admin.send("CLIENT", "KILL", "TYPE", "pubsub")
        let deadline = ContinuousClock.now + .seconds(10)
        while !capture.all.contains(where: { $0.level == .warning }), ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.01) }
        #expect(capture.all.contains { $0.level == .warning && $0.fullText.contains("tracking connection") }, "\(capture.all.map(\.fullText))")
    }
}
