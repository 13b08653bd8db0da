@testable import BaldurCache
import Testing

/// The decisions of a `getOrSet` miss that both APIs drive, without Redis.
@Suite("getOrSet plan")
struct GetOrSetPlanTests {
    @Test("the first step tries the lock; winning it computes as the winner")
    func electionWon() {
        var plan = GetOrSetPlan(waitTimeout: .seconds(10))
        #expect(plan.start == .elect)
        #expect(plan.elected(true) == .computeAsWinner)
        #expect(plan.deadline == nil)
    }

    @Test("a lost election polls every 50 ms with ±20% jitter until waitTimeout, winning the lock later computes as the winner")
    func lostElectionPolls() {
        var plan = GetOrSetPlan(waitTimeout: .seconds(10))
        var pauses: [Duration] = []
        guard case .poll(let first) = plan.elected(false) else {
            Issue.record("a lost election did not poll")
            return
        }
        pauses.append(first)
        #expect(plan.deadline != nil)
        for _ in 0..<50 {
            guard case .poll(let pause) = plan.polled(won: false) else {
                Issue.record("a poll within waitTimeout did not poll again")
                return
            }
            pauses.append(pause)
        }
        #expect(pauses.allSatisfy { $0 >= .milliseconds(40) && $0 <= .milliseconds(60) })
        #expect(Set(pauses).count > 1, "the polls are not jittered")
        #expect(plan.polled(won: true) == .computeAsWinner)
    }

    @Test("once waitTimeout has passed the caller looks once more, then computes")
    func waitOver() {
        var plan = GetOrSetPlan(waitTimeout: .zero)
        #expect(plan.elected(false) == .lastLook)
        #expect(plan.polled(won: false) == .lastLook)
        #expect(plan.polled(won: true) == .computeAsWinner)
    }

    @Test("a backend error fails open; cancellation and other errors end the call")
    func failures() throws {
        let plan = GetOrSetPlan(waitTimeout: .seconds(1))
        #expect(try plan.failed(RedisError(.connectionRefused, "down")) == .compute)
        #expect(throws: CancellationError.self) { try plan.failed(CancellationError()) }
        struct Unrelated: Error {}
        #expect(throws: Unrelated.self) { try plan.failed(Unrelated()) }
    }
}
