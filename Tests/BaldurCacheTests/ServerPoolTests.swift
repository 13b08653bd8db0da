@testable import BaldurCache
import Testing

/// One pool per server, leased by both APIs.
@Suite("One pool per server")
struct ServerPoolTests {
    /// A server that refuses every connect (nothing listens on the port).
    private func refusingClient() throws -> RedisClient {
        var configuration = RedisConfiguration(address: .tcp(host: "127.0.0.1", port: try freeLoopbackPort()))
        configuration.connectTimeout = .milliseconds(200)
        return try RedisClient(configuration: configuration)
    }

    /// The blocking API's `PING` (in async code `send` would pick the async one).
    private func blockingPing(_ client: RedisClient) throws {
        try client.send("PING")
    }

    /// Whether `error` is the back-off's refusal (no connect was tried) rather than a connect's own failure.
    private static func isBackOffRefusal(_ error: any Error) -> Bool {
        guard let error = error as? RedisError else { return false }
        return error.code == .connectionRefused && error.message.contains("no new connection tried")
    }

    @Test("connects refused to the blocking API back the async API off too, without a connect of its own, and the other way round")
    func backOffIsShared() async throws {
        // The back-off after two failures is 12.5-25 ms: a few fresh clients
        // give the other API's call that window at least once.
        var asyncBackedOff = false
        for _ in 0..<10 where !asyncBackedOff {
            let client = try refusingClient()
            defer { client.close() }
            for _ in 0..<2 { #expect(throws: RedisError.self) { try blockingPing(client) } }
            do { _ = try await client.send("PING") } catch { asyncBackedOff = Self.isBackOffRefusal(error) }
        }
        #expect(asyncBackedOff, "the async API connected although the blocking API's connects to the server had just failed twice")

        var blockingBackedOff = false
        for _ in 0..<10 where !blockingBackedOff {
            let client = try refusingClient()
            defer { client.close() }
            for _ in 0..<2 { _ = try? await client.send("PING") }
            do { try blockingPing(client) } catch { blockingBackedOff = Self.isBackOffRefusal(error) }
        }
        #expect(blockingBackedOff, "the blocking API connected although the async API's connects to the server had just failed twice")
    }

    @Test("a client's open connections count both APIs' on one pool, and close() closes both")
    func oneCountOneClose() async throws {
        let client = try RedisClient(configuration: RedisConfiguration(url: TestEnvironment.url()))
        try blockingPing(client)
        _ = try await client.send("PING")
        #expect(client.openConnections >= 2, "one blocking and one pipelined connection")
        client.close()
        #expect(client.openConnections == 0)
        #expect(throws: RedisError.self) { try blockingPing(client) }
        await #expect(throws: RedisError.self) { try await client.send("PING") }
    }
}
