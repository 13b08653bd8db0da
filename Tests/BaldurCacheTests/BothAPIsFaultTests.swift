import BaldurCache
import Foundation
import Testing

/// The blocking and the async API on one client, faulted at once: each call
/// ends at its own timeout, and both recover.
@Suite("Both APIs under one fault", .serialized)
struct BothAPIsFaultTests {
    private static func outcome(_ call: () throws -> Void) -> (code: RedisError.Code?, ended: ContinuousClock.Instant) {
        do {
            try call()
            return (nil, .now)
        } catch {
            return ((error as? RedisError)?.code, .now)
        }
    }

    @Test("a blocking and an async call in flight on one stalled server (SIGSTOP) both end with readTimeout at commandTimeout, and the next calls of both succeed", .timeLimit(.minutes(1)))
    func stalledServerEndsBothAPIs() async throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        var configuration = try server.configuration(commandTimeout: .milliseconds(500))
        configuration.retry.onTimeout = false
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        _ = try blockingSend(client, "PING")
        try await client.ping()

        server.pause()
        let stalled = ContinuousClock.now
        async let blocking = onOwnThread { Self.outcome { try client.send("SET", "both:blocking", "v") } }
        let asyncOutcome: (code: RedisError.Code?, ended: ContinuousClock.Instant)
        do {
            try await client.send("SET", "both:async", "v")
            asyncOutcome = (nil, .now)
        } catch {
            asyncOutcome = ((error as? RedisError)?.code, .now)
        }
        let blockingOutcome = await blocking
        server.resume()

        for (api, outcome) in [("blocking", blockingOutcome), ("async", asyncOutcome)] {
            #expect(outcome.code == .readTimeout, "\(api): \(String(describing: outcome.code))")
            let after = stalled.duration(to: outcome.ended)
            // At commandTimeout: not before it, and not waiting for the stall to end (it lasts until resume()).
            #expect(after >= .milliseconds(450) && after < .seconds(3), "\(api) ended \(after) after the stall began")
        }
        #expect(try blockingSend(client, "SET", "both:blocking", "after") == .status("OK"))
        #expect(try await client.send("SET", "both:async", "after") == .status("OK"))
        #expect(try await client.send("GET", "both:blocking") == .bulk(Array("after".utf8)))
        #expect(try blockingSend(client, "GET", "both:async") == .bulk(Array("after".utf8)))
    }

    @Test("a blocking and an async call in flight when the server is killed both end with a connection error, and both succeed once it is back", .timeLimit(.minutes(1)))
    func killedServerEndsBothAPIs() async throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        var configuration = try server.configuration(commandTimeout: .seconds(5))
        configuration.retry.onTimeout = false
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        _ = try blockingSend(client, "PING")
        try await client.ping()

        // BLPOP holds both calls in flight on the server until it dies.
        async let blocking = onOwnThread { Self.outcome { try client.send("BLPOP", "both:never", "4") } }
        async let asynchronous: RedisError.Code? = {
            do {
                try await client.send("BLPOP", "both:never-async", "4")
                return nil
            } catch {
                return (error as? RedisError)?.code
            }
        }()
        try await Task.sleep(for: .milliseconds(300))
        let killed = ContinuousClock.now
        server.kill()
        let (blockingCode, blockingEnded) = await blocking
        let asyncCode = await asynchronous
        #expect(blockingCode.map { $0 != .readTimeout && $0 != .server } == true, "blocking: \(String(describing: blockingCode))")
        #expect(asyncCode.map { $0 != .readTimeout && $0 != .server } == true, "async: \(String(describing: asyncCode))")
        #expect(killed.duration(to: blockingEnded) < .seconds(2), "the blocking call ended with the server, not at its BLPOP timeout")

        try server.start()
        #expect(try blockingSend(client, "PING") == .status("PONG"))
        #expect(try await client.send("PING") == .status("PONG"))
    }
}

/// The blocking `send`, from code that is itself `async` (where `send` would pick the async overload).
@discardableResult
private func blockingSend(_ client: RedisClient, _ arguments: RedisArgument...) throws -> RedisReply {
    try client.send(arguments)
}

/// Connects never wait behind another server's connect.
@Suite("Connects in parallel", .serialized)
struct ConnectIsolationTests {
    @Test("20 connects hung on a stalled server (AUTH unanswered) do not delay a connect to a healthy one", .timeLimit(.minutes(1)))
    func hungConnectsDoNotDelayOthers() async throws {
        let stalled = try TestRedisServer()
        defer { stalled.stop() }
        var hanging = try RedisConfiguration(url: "redis://:secret@127.0.0.1:\(stalled.port)/0")
        hanging.connectTimeout = .seconds(3)
        hanging.commandTimeout = .seconds(3)
        hanging.retry.onTimeout = false
        let hung = try RedisClient(configuration: hanging)
        defer { hung.close() }
        stalled.pause()
        defer { stalled.resume() }
        // Each BLPOP needs a dedicated connection of its own: 20 connects, each stuck in AUTH until its timeout.
        let waiting = Task {
            await withTaskGroup(of: Void.self) { group in
                for index in 0..<20 { group.addTask { _ = try? await hung.send("BLPOP", RedisArgument("never:\(index)"), "1") } }
            }
        }
        try await Task.sleep(for: .milliseconds(300))

        let healthy = try RedisClient(configuration: TestEnvironment.configuration())
        defer { healthy.close() }
        let start = ContinuousClock.now
        #expect(try await healthy.send("PING") == .status("PONG"))
        let took = start.duration(to: .now)
        #expect(took < .seconds(1), "a connect to a healthy server took \(took) behind the hung ones")
        await waiting.value
    }
}
