@testable import BaldurCache
import Dispatch
import Foundation
import Synchronization
import Testing

@Suite("Connection pool")
struct PoolTests {
    @Test("32 threads x 1,000 commands through a pool of 4 never see another caller's reply", .ownThread)
    func noCrossedReplies() throws {
        let client = try TestEnvironment.client(maxConnections: 4)
        defer { client.close() }
        let mismatches = Atomic<Int>(0)
        let failures = PlainMutex<[String]>([])
        runOnThreads(32) { thread in
            for index in 0..<1000 {
                let token = "t\(thread)-c\(index)"
                do {
                    if try client.send("ECHO", RedisArgument(token)).string != token {
                        mismatches.add(1, ordering: .relaxed)
                    }
                } catch {
                    failures.withLock { $0.append("\(error)") }
                }
            }
        }
        #expect(mismatches.load(ordering: .relaxed) == 0)
        #expect(failures.withLock { $0 } == [])
        #expect(client.openConnections <= 4)
    }

    @Test("a caller that finds the pool full waits and gets the connection once it is returned", .ownThread)
    func fullPoolWaits() throws {
        var configuration = try TestEnvironment.configuration()
        configuration.pool.maxConnections = 1
        configuration.pool.timeout = .seconds(5)
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        let holding = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            _ = try? client.withConnection { connection in
                holding.signal()
                Thread.sleep(forTimeInterval: 0.2)
                return try connection.send(["PING"])
            }
            done.signal()
        }
        holding.wait()
        #expect(try client.send("ECHO", "waited").string == "waited")
        done.wait()
        #expect(client.openConnections == 1)
    }

    @Test("a caller that finds the pool full for longer than pool.timeout gets poolExhausted", .ownThread)
    func fullPoolFailsClearly() throws {
        var configuration = try TestEnvironment.configuration()
        configuration.pool.maxConnections = 1
        configuration.pool.timeout = .milliseconds(200)
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        try client.withConnection { _ throws in
            let error = #expect(throws: RedisError.self) { try client.send("PING") }
            #expect(error?.code == .poolExhausted)
            #expect(error?.message.contains("all 1 connections") == true)
        }
        try client.ping()
    }

    @Test("use after close() fails with .closed, and close() is idempotent", .ownThread)
    func useAfterClose() throws {
        let client = try TestEnvironment.client()
        try client.ping()
        client.close()
        client.close()
        let error = #expect(throws: RedisError.self) { try client.ping() }
        #expect(error?.code == .closed)
        #expect(client.openConnections == 0)
        let pipelineError = #expect(throws: RedisError.self) { try client.pipeline([["PING"]]) }
        #expect(pipelineError?.code == .closed)
    }

    @Test("a connection in use when close() is called is closed when it comes back", .ownThread)
    func closeWhileInUse() throws {
        let client = try TestEnvironment.client()
        try client.withConnection { connection throws in
            client.close()
            #expect(try connection.send(["PING"]) == .status("PONG"))
        }
        #expect(client.openConnections == 0)
    }

    @Test("a connection lent by withConnection is usable only inside the body: kept and used afterwards it throws closed, and nothing reaches the server on the connection the next caller now holds", .ownThread)
    func lentConnectionEndsWithTheBody() throws {
        let client = try TestEnvironment.client(maxConnections: 1)
        defer { client.close() }
        let key = RedisArgument("bctest:lent:\(UUID().uuidString)")
        var kept: RedisBlockingConnection?
        let replies = try client.withConnection { connection in
            kept = connection
            return try connection.transaction([["SET", key, "inside"], ["GET", key]])
        }
        #expect(replies == [.status("OK"), .bulk(Array("inside".utf8))])
        let escaped = try #require(kept)
        // The pool's one connection is back in the pool, and another caller holds it now.
        try client.withConnection { _ in
            let late = #expect(throws: RedisError.self) { try escaped.send("SET", key, "late") }
            #expect(late?.code == .closed, "\(String(describing: late))")
            #expect(throws: RedisError.self) { try escaped.pipeline([["DEL", key]]) }
            #expect(throws: RedisError.self) { try escaped.receive() }
        }
        #expect(try client.send("GET", key) == .bulk(Array("inside".utf8)))
        #expect(client.openConnections == 1, "the connection went back to the pool, unharmed")
        try client.send("DEL", key)
    }

    @Test("1,000 create/use/close cycles leave no socket open to the server", .ownThread)
    func noDescriptorLeak() throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        let configuration = try server.configuration()
        #expect(try openSocketDescriptors(toPort: server.port) == 0)
        for cycle in 0..<1000 {
            let client = try RedisClient(configuration: configuration)
            try client.ping()
            if cycle == 0 {
                // The probe must see the socket it is meant to count.
                let during = try openSocketDescriptors(toPort: server.port)
                #expect(during == 1)
            }
            client.close()
        }
        #expect(try openSocketDescriptors(toPort: server.port) == 0)
    }

    @Test("a client dropped without close() frees its sockets", .ownThread)
    func deinitClosesSockets() throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        let configuration = try server.configuration()
        for _ in 0..<50 {
            let client = try RedisClient(configuration: configuration)
            try client.ping()
        }
        #expect(try openSocketDescriptors(toPort: server.port) == 0)
    }

    @Test("reconnect() drops pooled connections and proves the server is back with PING", .ownThread)
    func reconnectDropsConnections() throws {
        let client = try TestEnvironment.client()
        defer { client.close() }
        let firstID = try client.send("CLIENT", "ID").integer
        try client.reconnect()
        let secondID = try client.send("CLIENT", "ID").integer
        #expect(firstID != nil && secondID != nil && firstID != secondID)
        #expect(client.openConnections == 1)
    }
}

@Suite("Pool health checks")
struct PoolHealthCheckTests {
    @Test("an idle connection older than healthCheckInterval is checked with PING before reuse; a fresh one is not", .ownThread)
    func healthCheckBeforeReuse() throws {
        let server = try TestRedisServer()
        defer { server.stop() }
        var configuration = try server.configuration()
        configuration.pool.maxConnections = 1
        configuration.pool.healthCheckInterval = .seconds(5)
        let client = try RedisClient(configuration: configuration)
        defer { client.close() }
        try client.send("CONFIG", "RESETSTAT")
        try client.send("ECHO", "fresh")
        #expect(!(try client.send("INFO", "commandstats").string ?? "").contains("cmdstat_ping"))
        // Age the pooled connection past the interval, as six idle seconds would.
        try client.withConnection { connection in try connection.lent.lastUsed = .now - .seconds(6) }
        try client.send("ECHO", "aged")
        #expect((try client.send("INFO", "commandstats").string ?? "").contains("cmdstat_ping:calls=1,"))
    }
}
