import BaldurCache
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization

/// A user, as a slow database would return it; cached as JSON.
struct User: Codable, Sendable, ResponseEncodable {
    let id: Int
    let name: String
}

/// An order taken under a job's lock: numbers are unique per job.
struct Order: Codable, Sendable, ResponseEncodable {
    let job: String
    let number: Int64
}

/// A note kept through Hummingbird's `PersistDriver`, with its time left.
struct Note: Codable, Sendable, ResponseEncodable {
    let text: String
    var secondsLeft: Double?
}

/// How many times the loader ran (what getOrSet saves).
struct Stats: Codable, Sendable, ResponseEncodable {
    let loads: Int
}

/// A Redis failure becomes 503 with the error's message (never a value or a password).
struct RedisErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as RedisError {
            let status: HTTPResponse.Status = error.code == .lockNotAcquired ? .conflict : .serviceUnavailable
            throw HTTPError(status, message: "\(error.code): \(error.message)")
        }
    }
}

@main
struct OrdersService {
    static func main() async throws {
        var logger = Logger(label: "orders")
        logger.logLevel = .info
        let environment = ProcessInfo.processInfo.environment
        guard let port = Int(environment["PORT"] ?? "8080"), (1...65535).contains(port) else {
            logger.critical("PORT must be a port number (1...65535)")
            exit(2)
        }
        // BALDUR_REDIS_URL and the other BALDUR_REDIS_* variables; the logger is the service's.
        let client = try RedisClient(configuration: .fromEnvironment(), logger: logger)
        let cache = try RedisCacheAdapter(client: client, keyPrefix: environment["ORDERS_PREFIX"] ?? "orders:", logger: logger)
        let loads = Atomic<Int>(0)

        let router = Router()
        router.add(middleware: RedisErrorMiddleware())
        router.get("users/:id") { _, context -> User in
            let id = try context.parameters.require("id", as: Int.self)
            // Fifty concurrent misses run the loader once; the others wait for its value.
            return try await cache.getOrSet("user:\(id)", as: User.self, ttl: .seconds(60)) {
                loads.add(1, ordering: .relaxed)
                try await Task.sleep(for: .milliseconds(200))  // the slow database
                return User(id: id, name: "user \(id)")
            }
        }
        router.post("jobs/:id/orders") { _, context -> Order in
            let job = try context.parameters.require("id")
            // The lease is 10 s; the wait for it at most 5 s (then 409). A
            // graceful shutdown ends the wait at once, so SIGTERM never waits for a lock.
            let lock = cache.getLock("job:\(job)", timeout: .seconds(10), blockingTimeout: .seconds(5))
            return try await lock.withLock {
                Order(job: job, number: try await cache.incr("job:\(job):orders"))
            }
        }
        // Hummingbird's key-value store on the same Redis (BaldurPersistDriver.swift).
        let persist = BaldurPersistDriver(cache: cache)
        router.put("notes/:id") { request, context -> HTTPResponse.Status in
            let id = try context.parameters.require("id")
            let text = String(buffer: try await request.body.collect(upTo: 4096))
            try await persist.create(key: "note:\(id)", value: Note(text: text), expires: .seconds(60))
            return .created
        }
        router.get("notes/:id") { _, context -> Note in
            let id = try context.parameters.require("id")
            guard let (note, ttl) = try await persist.getWithTTL(key: "note:\(id)", as: Note.self) else { throw HTTPError(.notFound) }
            return Note(text: note.text, secondsLeft: ttl.map { Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18 })
        }
        router.get("stats") { _, _ -> Stats in Stats(loads: loads.load(ordering: .relaxed)) }

        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: logger)
        // The client first: a group stops in reverse order, so the server
        // finishes its requests before the client closes its connections.
        let group = ServiceGroup(
            configuration: .init(services: [client, app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        try await group.run()
    }
}
