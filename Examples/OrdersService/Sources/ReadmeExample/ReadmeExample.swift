// The README's example, word for word (scripts/example-smoke.sh builds it,
// so the front door's code keeps compiling). Keep the two in step.
import BaldurCache

struct Report: Codable, Sendable { var total: Int }

@main
struct Service {
    static func main() async throws {
        let cache = try RedisCacheAdapter(url: "redis://127.0.0.1:6379/0")  // or RedisCacheAdapter(): BALDUR_REDIS_URL
        defer { cache.close() }

        // In async code every call suspends; it never blocks a thread.
        try await cache.set("user:42", ["name": "Ada", "plan": "pro"] as JSONValue, ttl: .seconds(300))
        let user = try await cache.get("user:42")                      // JSONValue?, or get(_:as:) for any Decodable
        let visits = try await cache.incr("user:42:visits")

        // Runs once however many callers miss at the same moment.
        let report = try await cache.getOrSet("report:daily", as: Report.self, ttl: .seconds(600)) {
            Report(total: 42)
        }

        // A lock: `timeout` is the lease; `blockingTimeout` bounds the wait.
        // Released on every path (return, throw, cancellation).
        try await cache.getLock("user:42:billing", timeout: .seconds(30), blockingTimeout: .seconds(5))
            .withLock(autoRenew: true) {
                print("charging", user ?? .null, visits, report.total)
            }
    }
}
