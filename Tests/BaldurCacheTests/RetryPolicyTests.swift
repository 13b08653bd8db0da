@testable import BaldurCache
import Testing

/// When a failed call is sent again: the one decision both APIs and every topology use.
@Suite("Retry policy")
struct RetryPolicyTests {
    private let policy = RetryPolicy(retryOnTimeout: true)
    private static let lostReplies: [RedisError.Code] = [.readTimeout, .writeTimeout, .connectionClosed, .io]

    @Test("a request that never left (its pool was closed) goes once to the new server, read-only or not")
    func neverSent() {
        let closed = RedisError(.closed, "the pool was closed")
        #expect(policy.decide(after: closed, attempt: 1, readOnly: { false }) == .resendOnNewServer)
        #expect(RetryPolicy(retryOnTimeout: false).decide(after: closed, attempt: 1, readOnly: { false }) == .resendOnNewServer)
        #expect(policy.decide(after: closed, attempt: 2, readOnly: { true }) == .fail)
    }

    @Test("a lost reply is sent again on a fresh connection only for a read-only call, with retryOnTimeout, once", arguments: lostReplies)
    func lostReply(code: RedisError.Code) {
        let error = RedisError(code, "lost")
        #expect(error.isLostReply)
        #expect(policy.decide(after: error, attempt: 1, readOnly: { true }) == .resendOnFreshConnection)
        #expect(policy.decide(after: error, attempt: 1, readOnly: { false }) == .fail)
        #expect(policy.decide(after: error, attempt: 2, readOnly: { true }) == .fail)
        #expect(RetryPolicy(retryOnTimeout: false).decide(after: error, attempt: 1, readOnly: { true }) == .fail)
    }

    @Test("any other failure is the answer, and the command names are not looked up for it")
    func otherFailures() {
        for error in [RedisError(.server, "WRONGTYPE Operation against a key holding the wrong kind of value"),
                      RedisError(.connectionRefused, "refused"), RedisError(.connectTimeout, "slow"),
                      RedisError(.poolExhausted, "busy"), RedisError(.protocolError, "bad")] {
            var asked = false
            #expect(policy.decide(after: error, attempt: 1, readOnly: { asked = true; return true }) == .fail, "\(error)")
            #expect(!asked, "readOnly was asked for \(error.code)")
            #expect(!error.isLostReply)
        }
    }
}
