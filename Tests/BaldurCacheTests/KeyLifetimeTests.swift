@testable import BaldurCache
import Testing

/// `PTTL`'s answers, and the seconds the deprecated `ttl(_:)` derives from them.
@Suite struct KeyLifetimeTests {
    @Test("PTTL's -2 is a missing key, -1 a persistent one, anything else the milliseconds left")
    func pttlAnswers() {
        #expect(KeyLifetime(pttl: -2) == .missing)
        #expect(KeyLifetime(pttl: -1) == .persistent)
        #expect(KeyLifetime(pttl: 0) == .expires(in: .zero))
        #expect(KeyLifetime(pttl: 1_499) == .expires(in: .milliseconds(1_499)))
        #expect(KeyLifetime(pttl: 1_499).timeToLive == .milliseconds(1_499))
        #expect(KeyLifetime.missing.timeToLive == nil)
        #expect(KeyLifetime.persistent.timeToLive == nil)
    }

    @Test("The deprecated ttl(_:) answers what TTL answered: -2, nil, or seconds rounded to the nearest")
    func legacySecondsMatchTTL() {
        #expect(KeyLifetime.missing.legacySeconds == -2)
        #expect(KeyLifetime.persistent.legacySeconds == nil)
        // Redis's TTL is (PTTL + 500) / 1000.
        for milliseconds: Int64 in [0, 1, 499, 500, 1_499, 1_500, 59_999, 3_155_760_000_000] {
            #expect(KeyLifetime(pttl: milliseconds).legacySeconds == Int((milliseconds + 500) / 1000), "\(milliseconds) ms")
        }
    }
}
