@testable import BaldurCache
import Foundation
import InMemoryTracing
import MetricsTestKit
import Testing
import Tracing

/// Metrics and spans, recorded by in-memory backends scoped to one client each.
@Suite("Metrics and tracing")
struct ObservabilityTests {
    /// A client reporting to fresh in-memory backends.
    struct Observed {
        let metrics = TestMetrics()
        let tracer = InMemoryTracer()
        let client: RedisClient
        let port: Int

        init(configuration: RedisConfiguration? = nil, recordsKeys: Bool = false) throws {
            let configuration = try configuration ?? TestEnvironment.configuration()
            guard case .standalone(.tcp(_, let port)) = configuration.topology else { throw RedisError(.invalidConfiguration, "not TCP") }
            self.port = port
            client = try RedisClient(configuration: configuration, observability: RedisObservability(metrics: metrics, tracer: tracer, recordsKeys: recordsKeys))
        }

        func dimensions(_ operation: String) -> [(String, String)] {
            [("db.system.name", "redis"), ("server.address", "127.0.0.1"), ("server.port", String(port)), ("db.operation.name", operation)]
        }

        func spans(named name: String) -> [FinishedInMemorySpan] { tracer.finishedSpans.filter { $0.operationName == name } }
    }

    @Test("a successful command: one call, one duration, no error, and a client span with the OpenTelemetry database attributes", .ownThread)
    func successfulCommand() throws {
        let observed = try Observed()
        defer { observed.client.close() }
        let key = RedisArgument(TestKeys()("ok"))
        try observed.client.send("SET", key, "secret-value")
        _ = try observed.client.send("GET", key)
        try observed.client.send("DEL", key)
        #expect(observed.metrics.counterTotal(label: "db.client.operations", dimensions: observed.dimensions("GET")) == 1)
        #expect(observed.metrics.counterTotal(label: "db.client.operations", dimensions: observed.dimensions("SET")) == 1)
        #expect(try observed.metrics.expectTimer("db.client.operation.duration", observed.dimensions("GET")).values.count == 1)
        #expect(observed.metrics.counters(label: "db.client.operation.errors").isEmpty)
        let span = try #require(observed.spans(named: "GET").first)
        #expect(span.kind == .client)
        #expect(span.attributes["db.system.name"]?.toSpanAttribute() == "redis")
        #expect(span.attributes["db.operation.name"]?.toSpanAttribute() == "GET")
        #expect(span.attributes["db.namespace"]?.toSpanAttribute() == "0")
        #expect(span.attributes["server.address"]?.toSpanAttribute() == "127.0.0.1")
        #expect(span.attributes["server.port"]?.toSpanAttribute() == .int64(Int64(observed.port)))
        #expect(span.status == nil)
        // Neither the key nor the value is recorded anywhere by default.
        for recorded in observed.tracer.finishedSpans {
            #expect(recorded.attributes["baldur.redis.key"] == nil)
            recorded.attributes.forEach { _, value in #expect(!"\(value)".contains("secret-value") && !"\(value)".contains("bctest")) }
        }
        for counter in observed.metrics.counters {
            #expect(!counter.dimensions.contains { $0.1.contains("bctest") || $0.1.contains("secret") })
        }
    }

    @Test("a server error counts under its code, and its span is an error with the server's prefix", .ownThread)
    func serverError() throws {
        let observed = try Observed()
        defer { observed.client.close() }
        let key = RedisArgument(TestKeys()("text"))
        try observed.client.send("SET", key, "not a number")
        #expect(throws: RedisError.self) { try observed.client.send("LPUSH", key, "x") }
        try observed.client.send("DEL", key)
        #expect(observed.metrics.counterTotal(label: "db.client.operation.errors", dimensions: observed.dimensions("LPUSH") + [("error.type", "server")]) == 1)
        #expect(observed.metrics.counterTotal(label: "db.client.operations", dimensions: observed.dimensions("LPUSH")) == 1)
        let span = try #require(observed.spans(named: "LPUSH").first)
        #expect(span.status?.code == .error)
        #expect(span.attributes["error.type"]?.toSpanAttribute() == "WRONGTYPE")
        #expect(span.errors.count == 1)
    }

    @Test("a timeout counts as readTimeout, and its span says so", .ownThread)
    func timeout() throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        var configuration = try server.configuration(commandTimeout: .milliseconds(200))
        configuration.retry.onTimeout = false
        let observed = try Observed(configuration: configuration)
        defer { observed.client.close() }
        #expect(throws: RedisError.self) { try observed.client.send("DEBUG", "SLEEP", "0.5") }
        #expect(observed.metrics.counterTotal(label: "db.client.operation.errors", dimensions: observed.dimensions("DEBUG") + [("error.type", "readTimeout")]) == 1)
        let span = try #require(observed.spans(named: "DEBUG").first)
        #expect(span.attributes["error.type"]?.toSpanAttribute() == "readTimeout")
        #expect(span.status?.code == .error)
    }

    @Test("lock contention: acquisitions, one contended wait with its handoff time, and a loss", .ownThread)
    func lockContention() throws {
        let observed = try Observed()
        let cache = try RedisCacheAdapter(client: observed.client, keyPrefix: TestKeys().prefix)
        defer {
            _ = try? cache.flushAll()
            cache.close()
        }
        let holder = cache.getLock("contended", timeout: .seconds(10))
        try holder.acquire()
        let waiter = cache.getLock("contended", timeout: .seconds(10))
        let released = Thread {
            Thread.sleep(forTimeInterval: 0.2)
            try? holder.release()
        }
        released.start()
        #expect(try waiter.acquire(timeout: .seconds(5)))
        let system = Array(observed.dimensions("").dropLast())
        #expect(observed.metrics.counterTotal(label: "baldur.lock.acquired", dimensions: system) == 2)
        #expect(observed.metrics.counterTotal(label: "baldur.lock.contended", dimensions: system) == 1)
        let handoff = try observed.metrics.expectTimer("baldur.lock.handoff.duration", system).values
        #expect(handoff.count == 1)
        #expect((handoff.first ?? 0) > 100_000_000)
        // Taken over behind the waiter's back: its release finds another owner.
        try cache.rawClient.send("SET", RedisArgument(waiter.key), "someone-else")
        #expect(throws: RedisError.self) { try waiter.release() }
        #expect(observed.metrics.counterTotal(label: "baldur.lock.lost", dimensions: system) == 1)
    }

    @Test("get, mget and getOrSet count hits and misses by operation", .ownThread)
    func hitsAndMisses() throws {
        let observed = try Observed()
        let cache = try RedisCacheAdapter(client: observed.client, keyPrefix: TestKeys().prefix)
        defer {
            _ = try? cache.flushAll()
            cache.close()
        }
        try cache.set("a", 1, ttl: .seconds(60))
        try cache.set("b", 2, ttl: .seconds(60))
        _ = try cache.get("a")
        _ = try cache.get("missing")
        _ = try cache.mget(["a", "b", "missing"])
        _ = try cache.getOrSet("computed", as: Int.self) { 3 }
        _ = try cache.getOrSet("computed", as: Int.self) { 4 }
        func count(_ label: String, _ operation: String) -> Int64 {
            observed.metrics.counterTotal(label: label, dimensions: Array(observed.dimensions("").dropLast()) + [("baldur.cache.operation", operation)])
        }
        #expect(count("baldur.cache.hits", "mget") == 2)
        #expect(count("baldur.cache.misses", "mget") == 1)
        #expect(count("baldur.cache.hits", "getOrSet") == 1)
        #expect(count("baldur.cache.misses", "getOrSet") == 1)
        // get: a, missing, and getOrSet's own reads (two misses of "computed" while computing, one hit).
        #expect(count("baldur.cache.hits", "get") >= 2)
        #expect(count("baldur.cache.misses", "get") >= 2)
    }

    @Test("a pipeline is one span with its batch size; an adapter call that sends several is the parent of its commands' spans", .ownThread)
    func pipelineAndParentSpans() throws {
        let observed = try Observed()
        let cache = try RedisCacheAdapter(client: observed.client, keyPrefix: TestKeys().prefix)
        defer { cache.close() }
        _ = try observed.client.pipeline([["PING"], ["PING"], ["PING"]])
        let pipeline = try #require(observed.spans(named: "PIPELINE").first)
        #expect(pipeline.attributes["db.operation.batch.size"]?.toSpanAttribute() == 3)
        #expect(observed.metrics.counterTotal(label: "db.client.operations", dimensions: observed.dimensions("PIPELINE")) == 1)
        try cache.set("x", 1, ttl: .seconds(60))
        _ = try cache.flushAll()
        let flush = try #require(observed.spans(named: "flushAll").first)
        let children = observed.tracer.finishedSpans.filter { $0.parentSpanID == flush.spanID }
        #expect(Set(children.map(\.operationName)) == ["SCAN", "DEL"])
        #expect(children.allSatisfy { $0.traceID == flush.traceID })
    }

    @Test("the pool reports idle and used connections", .ownThread)
    func poolGauges() throws {
        let observed = try Observed()
        defer { observed.client.close() }
        try observed.client.ping()
        let system = Array(observed.dimensions("").dropLast())
        #expect(try observed.metrics.expectMeter("db.client.connection.count", system + [("db.client.connection.state", "idle")]).lastValue == 1)
        #expect(try observed.metrics.expectMeter("db.client.connection.count", system + [("db.client.connection.state", "used")]).lastValue == 0)
        #expect(throws: Never.self) { try observed.metrics.expectMeter("db.client.connection.pending_requests", system) }
    }

    @Test("keys are recorded on spans only when asked, as baldur.redis.key", .ownThread)
    func keysOnlyWhenAsked() throws {
        let observed = try Observed(recordsKeys: true)
        defer { observed.client.close() }
        _ = try observed.client.send("GET", "bctest:visible-key")
        #expect(observed.spans(named: "GET").first?.attributes["baldur.redis.key"]?.toSpanAttribute() == "bctest:visible-key")
    }

    @Test("with no backend bootstrapped, a client does no metrics or tracing work; odd command names never become labels", .ownThread)
    func disabledAndLabels() throws {
        let client = try TestEnvironment.client()
        defer { client.close() }
        #expect(!client.telemetry.isEnabled)
        #expect(Telemetry.operationName(of: ["get", "k"]) == "GET")
        #expect(Telemetry.operationName(of: [.bytes([0xFF, 0x00])]) == "OTHER")
        #expect(Telemetry.operationName(of: [RedisArgument(String(repeating: "A", count: 33))]) == "OTHER")
        #expect(Telemetry.operationName(of: ["user:42"]) == "OTHER")
    }

    @Test("a span started in the caller's task is the parent of the command spans of an async call")
    func asyncCallKeepsServiceContext() async throws {
        let observed = try Observed()
        let cache = try RedisCacheAdapter(client: observed.client, keyPrefix: TestKeys().prefix)
        defer { cache.close() }
        try await observed.tracer.withSpan("request") { _ in
            _ = try await cache.get("anything")
        }
        let request = try #require(observed.spans(named: "request").first)
        let get = try #require(observed.spans(named: "GET").first)
        #expect(get.parentSpanID == request.spanID)
        #expect(get.traceID == request.traceID)
    }
}
