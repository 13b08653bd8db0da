@testable import BaldurCache
import Dispatch
import Foundation
import Synchronization
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

    /// A client whose one server allows a single held connection, for both APIs together.
    private func singleConnectionClient(poolTimeout: Duration) throws -> RedisClient {
        var configuration = try TestEnvironment.configuration()
        configuration.pool.maxConnections = 1
        configuration.pool.timeout = poolTimeout
        return try RedisClient(configuration: configuration)
    }

    @Test("with maxConnections 1, a connection the blocking API holds makes an async caller that needs one of its own wait for it, and the other way round")
    func oneBudgetForBothAPIs() async throws {
        let client = try singleConnectionClient(poolTimeout: .seconds(10))
        defer { client.close() }

        // Blocking holder, async waiter.
        let holding = DispatchSemaphore(value: 0)
        let blockingReleased = Atomic<Bool>(false)
        async let holder: Void = onOwnThread {
            _ = try? client.withConnection { connection in
                holding.signal()
                Thread.sleep(forTimeInterval: 0.3)
                _ = try connection.send(["PING"])
                blockingReleased.store(true, ordering: .sequentiallyConsistent)
            }
        }
        await onOwnThread { holding.wait() }
        let sawRelease = try await client.withConnection { connection in
            _ = try await connection.send("PING")
            return blockingReleased.load(ordering: .sequentiallyConsistent)
        }
        await holder
        #expect(sawRelease, "the async caller got a connection of its own while the blocking API held the only one")

        // Async holder, blocking waiter.
        let asyncReleased = Atomic<Bool>(false)
        let started = Atomic<Bool>(false)
        async let waiter: Result<Bool, any Error> = onOwnThread {
            while !started.load(ordering: .sequentiallyConsistent) { Thread.sleep(forTimeInterval: 0.01) }
            return Result { try client.withConnection { _ in asyncReleased.load(ordering: .sequentiallyConsistent) } }
        }
        try await client.withConnection { connection in
            started.store(true, ordering: .sequentiallyConsistent)
            try await Task.sleep(for: .milliseconds(300))
            _ = try await connection.send("PING")
            asyncReleased.store(true, ordering: .sequentiallyConsistent)
        }
        #expect(try await waiter.get(), "the blocking caller got a connection of its own while the async API held the only one")
        #expect(client.openConnections <= 2, "one held connection and at most one shared one")
    }

    @Test("when the budget is spent, an idle connection of the other API gives its place up instead of making the caller wait for pool.timeout")
    func idleConnectionOfTheOtherAPIGivesWay() async throws {
        let client = try singleConnectionClient(poolTimeout: .milliseconds(300))
        defer { client.close() }
        try await client.withConnection { connection in _ = try await connection.send("PING") }
        let blocking: Result<RedisReply, any Error> = await onOwnThread { Result { try client.withConnection { try $0.send(["PING"]) } } }
        #expect(throws: Never.self) { try blocking.get() }
        await #expect(throws: Never.self) { try await client.withConnection { connection in try await connection.send("PING") } }
    }

    @Test("a blocking caller waiting for the budget ends with closed as soon as the client closes, not when a holder returns its connection")
    func closeEndsWaitingThreads() async throws {
        let client = try singleConnectionClient(poolTimeout: .seconds(30))
        let waiterEnded = DispatchSemaphore(value: 0)
        let holding = DispatchSemaphore(value: 0)
        let endedWhileHeld = Atomic<Bool>(false)
        // The holder gives its connection back once the waiter ended, or after 10 s.
        async let holder: Void = onOwnThread {
            _ = try? client.withConnection { _ in
                holding.signal()
                endedWhileHeld.store(waiterEnded.wait(timeout: .now() + 10) == .success, ordering: .sequentiallyConsistent)
            }
        }
        await onOwnThread { holding.wait() }
        async let waiter: RedisError? = onOwnThread {
            defer { waiterEnded.signal() }
            do { try client.ping() } catch let error as RedisError { return error } catch {}
            return nil
        }
        // The waiter queues; then the client closes under it.
        try await Task.sleep(for: .milliseconds(200))
        client.close()
        let error = await waiter
        await holder
        #expect(error?.code == .closed)
        let ended = endedWhileHeld.load(ordering: .sequentiallyConsistent)
        #expect(ended, "the waiter ended only when the holder returned its connection")
    }

    /// Waits up to 5 s for the server to have no connection with `id`;
    /// `false` when it still has one then.
    private func connectionEnds(_ id: Int64, on admin: RedisClient) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            if try await admin.send("CLIENT", "LIST", "ID", RedisArgument(id)).string?.isEmpty ?? false { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    /// The blocking API's `reconnect()` (in async code the async one would be picked).
    private func blockingReconnect(_ client: RedisClient) throws {
        try client.reconnect()
    }

    @Test("the blocking reconnect() closes the async API's shared connections too, not only the blocking API's idle ones")
    func blockingReconnectClosesSharedConnections() async throws {
        let client = try TestEnvironment.client()
        defer { client.close() }
        let admin = try TestEnvironment.client()
        defer { admin.close() }
        let shared = try #require(try await client.send("CLIENT", "ID").integer)
        try blockingReconnect(client)
        #expect(try await connectionEnds(shared, on: admin), "the shared connection outlived a reconnect")
        _ = try await client.send("PING")
    }

    @Test("a dedicated connection in use during reconnect() is closed when it comes back, not kept for the next holder", arguments: [false, true])
    func reconnectClosesDedicatedConnectionOnReturn(blockingReconnect reconnectsBlocking: Bool) async throws {
        let client = try TestEnvironment.client()
        defer { client.close() }
        let admin = try TestEnvironment.client()
        defer { admin.close() }
        let dedicated = try await client.withConnection { connection in
            let id = try await connection.send("CLIENT", "ID").integer
            if reconnectsBlocking { try blockingReconnect(client) } else { try await client.reconnect() }
            return id
        }
        #expect(try await connectionEnds(try #require(dedicated), on: admin), "a dedicated connection from before the reconnect was kept")
        let next = try await client.withConnection { connection in try await connection.send("CLIENT", "ID").integer }
        #expect(next != dedicated)
    }
}
