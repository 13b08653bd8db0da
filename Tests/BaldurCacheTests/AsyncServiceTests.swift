import BaldurCache
import Foundation
import Logging
import ServiceLifecycle
import Testing

@Suite("Client as a Service")
struct AsyncServiceTests {
    @Test("a graceful shutdown lets the calls in flight finish, then refuses new ones with .closed")
    func gracefulShutdownFinishesCallsInFlight() async throws {
        // A server of its own: the 2 s script below stalls whatever server it runs on.
        let server = try TestRedisServer()
        defer { server.stop() }
        var configuration = try server.configuration()
        configuration.pool.pipelinedConnections = 1
        let client = try RedisClient(configuration: configuration)
        let keys = TestKeys()
        try await client.ping()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let group = ServiceGroup(services: [client], logger: logger)
        let running = Task { try await group.run() }
        // A 2 s script holds the connection; 500 calls queue behind it and
        // are all sent (given 300 ms for that) before the shutdown begins.
        let slow = Task {
            try await client.send("EVAL", "local t = redis.call('TIME'); local stop = t[1] * 1000000 + t[2] + 2000000; repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop; return 'slow'", "0")
        }
        try await Task.sleep(for: .milliseconds(100))
        let queued = (0..<500).map { index in
            Task { try await client.send("SET", RedisArgument(keys("k\(index)")), RedisArgument("\(index)"), "EX", "60") }
        }
        try await Task.sleep(for: .milliseconds(300))
        await group.triggerGracefulShutdown()
        #expect(try await slow.value.string == "slow")
        for call in queued { #expect(try await call.value == .status("OK")) }
        try await running.value
        let refused = await #expect(throws: RedisError.self) { try await client.send("GET", RedisArgument(keys("k0"))) }
        #expect(refused?.code == .closed)
        // Every write acknowledged before the shutdown is there.
        let check = try RedisClient(url: server.url)
        defer { check.close() }
        #expect(try await check.send("GET", RedisArgument(keys("k499"))).string == "499")
        for index in 0..<500 { try await check.send("DEL", RedisArgument(keys("k\(index)"))) }
    }
}

@Suite("Pub/sub")
struct SubscriptionTests {
    @Test("subscribe delivers each published message once, in order, to the sequence")
    func subscriptionDeliversMessages() async throws {
        let client = try TestEnvironment.client()
        defer { client.close() }
        let channel = "bctest:channel:\(UUID().uuidString)"
        let messages = try await client.subscribe(to: [channel, channel + ":other"])
        for index in 0..<100 { try await client.send("PUBLISH", RedisArgument(channel), RedisArgument("message \(index)")) }
        try await client.send("PUBLISH", RedisArgument(channel + ":other"), "last")
        var received: [String] = []
        for try await message in messages {
            received.append("\(message.channel == channel ? "" : "other:")\(message.text)")
            if received.count == 101 { break }
        }
        #expect(received == (0..<100).map { "message \($0)" } + ["other:last"])
    }

    @Test("dropping the sequence unsubscribes: the server counts no subscriber")
    func droppedSubscriptionUnsubscribes() async throws {
        let client = try TestEnvironment.client()
        defer { client.close() }
        let channel = "bctest:channel:\(UUID().uuidString)"
        func subscribers() async throws -> Int64 {
            try await client.send("PUBSUB", "NUMSUB", RedisArgument(channel)).array?.last?.integer ?? -1
        }
        do {
            let messages = try await client.subscribe(to: [channel])
            #expect(try await subscribers() == 1)
            try await client.send("PUBLISH", RedisArgument(channel), "one")
            var iterator = messages.makeAsyncIterator()
            #expect(try await iterator.next()?.text == "one")
        }
        let deadline = ContinuousClock.now + .seconds(5)
        while try await subscribers() != 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(try await subscribers() == 0)
    }

    @Test("closing the client ends its subscriptions: the sequence finishes and the server counts no subscriber")
    func closingTheClientEndsSubscriptions() async throws {
        let client = try TestEnvironment.client()
        let observer = try TestEnvironment.client()
        defer { observer.close() }
        let channel = "bctest:channel:\(UUID().uuidString)"
        let messages = try await client.subscribe(to: [channel])
        #expect(try await observer.send("PUBSUB", "NUMSUB", RedisArgument(channel)).array?.last == .integer(1))
        client.close()
        var received = 0
        for try await _ in messages { received += 1 }
        #expect(received == 0)
        let deadline = ContinuousClock.now + .seconds(5)
        var subscribers: RedisReply? = nil
        repeat {
            subscribers = try await observer.send("PUBSUB", "NUMSUB", RedisArgument(channel)).array?.last
            if subscribers != .integer(0) { try await Task.sleep(for: .milliseconds(20)) }
        } while subscribers != .integer(0) && ContinuousClock.now < deadline
        #expect(subscribers == .integer(0))
    }

    @Test("a subscription whose server dies ends with a connection error")
    func subscriptionEndsWithErrorWhenServerDies() async throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        let client = try RedisClient(url: server.url)
        defer { client.close() }
        let messages = try await client.subscribe(to: ["news"])
        server.kill()
        let error = await #expect(throws: RedisError.self) {
            for try await _ in messages {}
        }
        #expect(error?.code == .connectionClosed || error?.code == .io)
    }
}
