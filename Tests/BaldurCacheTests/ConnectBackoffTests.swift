@testable import BaldurCache
import Testing

/// The connect back-off both pools keep, without a server.
@Suite("Connect back-off")
struct ConnectBackoffTests {
    private let refused = RedisError(.connectionRefused, "127.0.0.1:1 refused the connection")

    @Test("the first failed connect is not waited out; the second refuses new connects for a while, saying so")
    func secondFailureBacksOff() {
        var backoff = ConnectBackoff()
        let now = ContinuousClock.now
        do {
            let started = backoff.failed(refused, at: now)
            #expect(!started)
        }
        #expect(backoff.refusal(at: now) == nil)
        do {
            let started = backoff.failed(refused, at: now)
            #expect(started)
        }
        guard let refusal = backoff.refusal(at: now) else {
            Issue.record("the second failure in a row did not back off")
            return
        }
        #expect(refusal.code == .connectionRefused)
        #expect(refusal.message.contains("refused the connection"))
        #expect(refusal.message.contains("after 2 failed connects"))
        #expect(backoff.refusal(at: now + .seconds(1)) == nil, "the first delay is 25 ms at most")
        do {
            let started = backoff.failed(refused, at: now)
            #expect(!started, "only the failure that starts the back-off is reported")
        }
    }

    @Test("the delay doubles, with jitter, up to 1 s")
    func delayGrowsToACap() {
        var backoff = ConnectBackoff()
        let now = ContinuousClock.now
        for _ in 0..<12 { _ = backoff.failed(refused, at: now) }
        #expect(backoff.refusal(at: now + .milliseconds(450)) != nil, "the delay did not grow to half a second and more")
        #expect(backoff.refusal(at: now + .milliseconds(1_001)) == nil, "the delay passed its 1 s cap")
    }

    @Test("an answer (a wrong password, a bad database) is not an outage: it does not count")
    func answersDoNotCount() {
        var backoff = ConnectBackoff()
        for _ in 0..<5 {
            do {
                let started = backoff.failed(RedisError(.server, "WRONGPASS invalid username-password pair or user is disabled."))
                #expect(!started)
            }
        }
        #expect(backoff.failures == 0)
        #expect(backoff.refusal() == nil)
    }

    @Test("a connect that works forgets the failures")
    func resetForgets() {
        var backoff = ConnectBackoff()
        _ = backoff.failed(refused)
        _ = backoff.failed(refused)
        #expect(backoff.refusal() != nil)
        backoff.reset()
        #expect(backoff.failures == 0)
        #expect(backoff.refusal() == nil)
        do {
            let started = backoff.failed(refused)
            #expect(!started, "after a reset the next failure is a first one")
        }
    }
}
