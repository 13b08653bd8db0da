@testable import BaldurCache
import Foundation
import Testing

/// The async API on the event-loop engine: pipelining, cancellation,
/// deadlines and failures, against a real server.
@Suite("Async engine", .serialized)
struct AsyncEngineTests {
    @Test("10,000 concurrent tasks each read back only their own values over the shared connections")
    func concurrentTasksGetTheirOwnReplies() async throws {
        let client = try TestEnvironment.client()
        defer { client.close() }
        let keys = TestKeys()
        let failures = try await withThrowingTaskGroup(of: Int.self) { group in
            for task in 0..<10_000 {
                group.addTask {
                    let key = keys("task:\(task)")
                    try await client.send("SET", RedisArgument(key), RedisArgument("value-\(task)"), "EX", "60")
                    var wrong = 0
                    for round in 0..<3 {
                        let reply = try await client.send("GET", RedisArgument(key))
                        if reply.string != "value-\(task)" { wrong += 1 }
                        let echoed = try await client.send("ECHO", RedisArgument("\(task)/\(round)"))
                        if echoed.string != "\(task)/\(round)" { wrong += 1 }
                    }
                    return wrong
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(failures == 0)
        #expect((1...2).contains(client.openConnections))
    }

    @Test("cancelling half of 10,000 in-flight calls leaves every other reply correct and the connection open")
    func cancellationDropsOnlyTheCancelledReplies() async throws {
        var configuration = try TestEnvironment.configuration()
        configuration.pool.pipelinedConnections = 1
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        let keys = TestKeys()
        try await client.send("SET", RedisArgument(keys("shared")), "start", "EX", "60")
        let tasks = (0..<10_000).map { index in
            Task { () -> Result<String?, any Error> in
                do {
                    // A slow-ish pipeline of ECHOs so that cancellation lands while replies are due.
                    let reply = try await client.send("ECHO", RedisArgument("reply-\(index)"))
                    return .success(reply.string)
                } catch {
                    return .failure(error)
                }
            }
        }
        for (index, task) in tasks.enumerated() where index % 2 == 0 { task.cancel() }
        var wrong = 0
        var cancelled = 0
        var otherErrors = 0
        for (index, task) in tasks.enumerated() {
            switch await task.value {
            case .success(let text): if text != "reply-\(index)" { wrong += 1 }
            case .failure(let error) where error is CancellationError: cancelled += 1; if index % 2 == 1 { wrong += 1 }
            case .failure: otherErrors += 1
            }
        }
        #expect(wrong == 0)
        #expect(otherErrors == 0)
        // The connection that carried them is still the one open, and still in step.
        #expect(client.openConnections == 1)
        let after = try await client.send("GET", RedisArgument(keys("shared")))
        #expect(after.string == "start")
        let id = try await client.send("CLIENT", "ID").integer
        #expect(try await client.send("CLIENT", "ID").integer == id)
        print("cancelled before their replies: \(cancelled) of 5,000")
    }

    @Test("a call cancelled while its reply is due resumes at once, and the late reply goes to nobody")
    func cancelledCallResumesAtOnce() async throws {
        // A server of its own: the 3 s script below stalls whatever server it runs on.
        let server = try TestRedisServer()
        defer { server.stop() }
        var configuration = try server.configuration()
        configuration.pool.pipelinedConnections = 1
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        let keys = TestKeys()
        // A Lua busy-loop of 3 s holds the reply back; the cancelled call
        // must not wait for it (this is a bound on waiting for the reply,
        // not a speed claim).
        let slow = Task { try await client.send("EVAL", "local t = redis.call('TIME'); local stop = t[1] * 1000000 + t[2] + 3000000; repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop; return 'slow'", "0") }
        try await Task.sleep(for: .milliseconds(100))
        let start = ContinuousClock.now
        slow.cancel()
        await #expect(throws: CancellationError.self) { try await slow.value }
        #expect(ContinuousClock.now - start < .seconds(2))
        try await client.send("SET", RedisArgument(keys("after")), "mine", "EX", "60")
        #expect(try await client.send("GET", RedisArgument(keys("after"))).string == "mine")
    }

    @Test("a pipeline's replies come back together and in order, error replies as values")
    func pipelineKeepsOrder() async throws {
        let client = try TestEnvironment.client()
        defer { client.close() }
        let keys = TestKeys()
        let key = RedisArgument(keys("counter"))
        let replies = try await client.pipeline([["SET", key, "1"], ["INCR", key], ["HGET", key, "f"], ["GET", key]])
        #expect(replies.count == 4)
        #expect(replies[0] == .status("OK"))
        #expect(replies[1] == .integer(2))
        #expect(replies[2].string == nil && { if case .error = replies[2] { true } else { false } }())
        #expect(replies[3].string == "2")
        #expect(try await client.pipeline([["ECHO", "one"]]) == [.bulk(Array("one".utf8))])
        try await client.send("DEL", key)
    }

    @Test("replies of every size around the reader's 1 KiB feed slices, many to a read, arrive whole and in order")
    func repliesAcrossFeedSlicesArriveWhole() async throws {
        let client = try TestEnvironment.client()
        defer { client.close() }
        let keys = TestKeys()
        // Lengths whose replies end just before, on and after a slice edge,
        // and values longer than one read (64 KiB) and than many slices.
        let lengths = Array(0...40) + Array(990...1060) + [2047, 2048, 2049, 65_535, 65_536, 65_537, 200_003]
        func value(_ index: Int, _ length: Int) -> [UInt8] { (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) } }
        _ = try await client.pipeline(lengths.enumerated().map { index, length in
            ["SET", RedisArgument(keys("v\(index)")), .bytes(value(index, length)), "EX", "60"]
        })
        // One pipeline: all the replies back to back, several to a read.
        let replies = try await client.pipeline(lengths.indices.map { ["GET", RedisArgument(keys("v\($0)"))] })
        #expect(replies.count == lengths.count)
        for (index, length) in lengths.enumerated() {
            #expect(replies[index] == .bulk(value(index, length)), "value \(index) of \(length) bytes")
        }
        // Many tasks at once: their replies interleave in the same reads.
        let wrong = try await withThrowingTaskGroup(of: Int.self) { group in
            for (index, length) in lengths.enumerated() {
                group.addTask { try await client.send("GET", RedisArgument(keys("v\(index)"))) == .bulk(value(index, length)) ? 0 : 1 }
            }
            return try await group.reduce(0, +)
        }
        #expect(wrong == 0)
    }

    /// A connected client of `server` whose requests time out after 300 ms, not sent again after a timeout.
    private func shortTimeoutClient(of server: TestRedisServer) async throws -> RedisClient {
        var configuration = try RedisConfiguration(url: server.url)
        configuration.commandTimeout = .milliseconds(300)
        configuration.retry.onTimeout = false
        let client = try RedisClient(configuration: configuration)
        try await client.ping()
        return client
    }

    @Test("a lone request larger than the socket takes at once goes out whole: its caller writes what the socket takes, the loop the rest")
    func loneLargeRequestIsWrittenWhole() async throws {
        let client = try TestEnvironment.client()
        defer { client.close() }
        let keys = TestKeys()
        let key = RedisArgument(keys("large"))
        for round in 0..<3 {
            let value = (0..<(8 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ round) }
            try await client.send("SET", key, .bytes(value), "EX", "60")
            #expect(try await client.send("GET", key) == .bulk(value), "round \(round)")
        }
        try await client.send("DEL", key)
    }

    @Test("a lone request too large for the socket to a stalled server ends with writeTimeout at commandTimeout, and the next call succeeds")
    func loneLargeRequestToStalledServerTimesOut() async throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        let client = try await shortTimeoutClient(of: server)
        defer { client.close() }
        server.pause()
        let value = [UInt8](repeating: 0x61, count: 32 << 20)
        let code: RedisError.Code?
        do {
            try await client.send("SET", "large", .bytes(value))
            code = nil
        } catch {
            code = (error as? RedisError)?.code
        }
        server.resume()
        #expect(code == .writeTimeout)
        try await client.ping()
    }

    @Test("an error reply is thrown with the server's message")
    func errorReplyIsThrown() async throws {
        let client = try TestEnvironment.client()
        defer { client.close() }
        let keys = TestKeys()
        let key = RedisArgument(keys("list"))
        try await client.send("RPUSH", key, "x")
        let error = await #expect(throws: RedisError.self) { try await client.send("INCR", key) }
        #expect(error?.code == .server)
        #expect(error?.prefix == "WRONGTYPE")
        try await client.send("DEL", key)
    }

    @Test("session commands are refused on the shared connections and run inside withConnection")
    func transactionsRunOnDedicatedConnections() async throws {
        let client = try TestEnvironment.client()
        defer { client.close() }
        let keys = TestKeys()
        let key = RedisArgument(keys("tx"))
        let refused = await #expect(throws: RedisError.self) { try await client.send("MULTI") }
        #expect(refused?.code == .invalidArgument)
        await #expect(throws: RedisError.self) { try await client.send("SUBSCRIBE", "x") }
        let results = try await client.withConnection { connection in
            try await connection.transaction([["INCR", key], ["INCR", key]])
        }
        #expect(results == [.integer(1), .integer(2)])
        // WATCH, a change from elsewhere, EXEC: nothing runs.
        let aborted = try await client.withConnection { connection in
            try await connection.send("WATCH", key)
            try await client.send("SET", key, "10")
            return try await connection.transaction([["INCR", key]])
        }
        #expect(aborted == nil)
        #expect(try await client.send("GET", key).string == "10")
        try await client.send("DEL", key)
    }

    @Test("BLPOP waits on a dedicated connection while the shared ones keep serving")
    func blockingCommandsDoNotStallTheSharedConnections() async throws {
        var configuration = try TestEnvironment.configuration()
        configuration.pool.pipelinedConnections = 1
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        let keys = TestKeys()
        let list = RedisArgument(keys("queue"))
        let waiter = Task { try await client.send("BLPOP", list, "2") }
        try await Task.sleep(for: .milliseconds(100))
        for index in 0..<100 {
            #expect(try await client.send("ECHO", RedisArgument("\(index)")).string == "\(index)")
        }
        try await client.send("RPUSH", list, "item")
        let popped = try await waiter.value
        #expect(popped.array?.last?.string == "item")
    }

    @Test("a stalled server fails the calls in flight with readTimeout within commandTimeout, and the next calls succeed")
    func stalledServerTimesOutInFlightCalls() async throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        let client = try await shortTimeoutClient(of: server)
        defer { client.close() }
        server.pause()
        let start = ContinuousClock.now
        let results = await withTaskGroup(of: RedisError.Code?.self) { group in
            for index in 0..<50 {
                group.addTask {
                    do {
                        try await client.send("SET", RedisArgument("stall:\(index)"), "v")
                        return nil
                    } catch let error as RedisError {
                        return error.code
                    } catch {
                        return .closed
                    }
                }
            }
            return await group.reduce(into: [RedisError.Code?]()) { $0.append($1) }
        }
        let elapsed = ContinuousClock.now - start
        server.resume()
        #expect(results.allSatisfy { $0 == .readTimeout || $0 == .connectionClosed })
        #expect(results.contains { $0 == .readTimeout })
        // Without per-request deadlines they would wait as long as the stall.
        #expect(elapsed < .seconds(10))
        try await client.ping()
    }

    @Test("a call that comes just after its shared connection failed is sent on a new connection, never failed at once with the old connection's timeout")
    func callAfterAFailureGoesToANewConnection() async throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        var configuration = try RedisConfiguration(url: server.url)
        configuration.commandTimeout = .milliseconds(250)
        configuration.retry.onTimeout = false
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        try await client.ping()

        // The mechanism: a failed shared connection takes nothing more, and says the request was not sent.
        let pool = try await client.serverPool(for: [])
        let failed = try await pool.onShared { $0 }
        failed.closeSoon(failingCallsWith: RedisError(.readTimeout, "the old connection's timeout"))
        await #expect(throws: UnsentRequest.self) { _ = try await failed.send(["PING"]) }
        #expect(try await pool.onShared { connection in try await connection.send(["PING"]) } == .status("PONG"))

        // Under load: 256 tasks calling on through a 1.5 s stall. A readTimeout is
        // a call's own, so it comes no sooner than commandTimeout after the call.
        server.pause()
        let stallEnds = ContinuousClock.now + .milliseconds(1500)
        let early = await withTaskGroup(of: [String].self) { group in
            for task in 0..<256 {
                group.addTask {
                    var early: [String] = []
                    while ContinuousClock.now < stallEnds {
                        let start = ContinuousClock.now
                        do {
                            try await client.send("SET", RedisArgument("unsent:\(task)"), "v")
                        } catch let error as RedisError where error.code == .readTimeout || error.code == .writeTimeout {
                            let waited = start.duration(to: .now)
                            if waited < .milliseconds(200) { early.append("\(error.code) after \(waited)") }
                        } catch {}
                    }
                    return early
                }
            }
            return await group.reduce(into: []) { $0 += $1 }
        }
        server.resume()
        #expect(early.isEmpty, "\(early.count) calls failed with a timeout sooner than their own: \(early.prefix(3))")
        try await client.ping()
    }

    @Test("a server killed under load fails the in-flight calls with typed errors, and calls succeed after the restart")
    func killedServerFailsInFlightCallsAndRecovers() async throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        let client = try RedisClient(url: server.url)
        defer { client.close() }
        try await client.ping()
        let load = Task {
            await withTaskGroup(of: [RedisError.Code].self) { group in
                for task in 0..<64 {
                    group.addTask {
                        var codes: [RedisError.Code] = []
                        for round in 0..<2_000 {
                            do {
                                let key = RedisArgument("kill:\(task)")
                                try await client.send("SET", key, RedisArgument("\(round)"))
                                let value = try await client.send("GET", key).string
                                if value != "\(round)" { codes.append(.protocolError) }
                            } catch let error as RedisError {
                                codes.append(error.code)
                                if codes.count > 20 { return codes }
                                try? await Task.sleep(for: .milliseconds(5))
                            } catch {
                                codes.append(.closed)
                            }
                        }
                        return codes
                    }
                }
                return await group.reduce(into: []) { $0 += $1 }
            }
        }
        try await Task.sleep(for: .milliseconds(200))
        server.kill()
        let codes = await load.value
        #expect(!codes.isEmpty)
        #expect(!codes.contains(.protocolError))
        #expect(codes.allSatisfy { [.connectionClosed, .io, .connectionRefused, .readTimeout, .writeTimeout].contains($0) })
        try server.start()
        // Connects back off (at most 1 s) after the failures while the server
        // was down; calls meanwhile fail fast with the last connect error.
        let deadline = ContinuousClock.now + .seconds(5)
        var recovered = false
        while !recovered, ContinuousClock.now < deadline {
            do {
                try await client.send("SET", "kill:after", "ok")
                recovered = true
            } catch let error as RedisError where error.code == .connectionRefused {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        #expect(recovered)
        #expect(try await client.send("GET", "kill:after").string == "ok")
    }
}
