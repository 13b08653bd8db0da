@testable import BaldurCache
import Foundation
import Testing

/// The JSON reader's exact fast path for decimals and the writer's integer digits.
@Suite("JSON numbers")
struct JSONNumberTests {
    /// The `Double` the reader produced for `text`, bit for bit.
    private func parsedDouble(_ text: String) throws -> Double? {
        switch try JSONValue(parsing: text) {
        case .double(let value): return value
        default: return nil
        }
    }

    @Test("decimals parse to exactly the Double strtod gives, on and off the fast path", arguments: [
        "0.1", "-0.0", "0.0", "1.5", "1732640000.5", "0.05", "1e22", "1e23", "1E-22", "1e-23", "123456789012345.6",
        "1234567890123456.7", "9007199254740993.0", "1.7976931348623157e308", "5e-324", "2.2250738585072014e-308",
        "0.000000000000000000001", "100000000000000000000000.0", "-3.25e+2", "7.0e0", "0.30000000000000004",
    ])
    func edgeDecimals(text: String) throws {
        let parsed = try #require(try parsedDouble(text))
        let expected = try #require(Double(text))
        #expect(parsed.bitPattern == expected.bitPattern, "\(text): \(parsed) vs \(expected)")
    }

    @Test("20,000 random decimals in several spellings parse exactly like strtod")
    func randomDecimals() throws {
        var generator = SystemRandomNumberGenerator()
        var mismatches: [String] = []
        for round in 0..<20_000 {
            let magnitude = Double.random(in: -30...30, using: &generator)
            let value = Double.random(in: -1...1, using: &generator) * pow(10, magnitude)
            let spellings = [
                "\(value)",
                String(format: "%.\(round % 17 + 1)g", value),
                String(format: "%.\(round % 12)e", value),
                String(format: "%.\(round % 8)f", value),
            ]
            for text in spellings where text.contains(".") || text.contains("e") {
                guard let parsed = try parsedDouble(text), let expected = Double(text) else {
                    mismatches.append("\(text) did not parse as a double")
                    continue
                }
                if parsed.bitPattern != expected.bitPattern { mismatches.append("\(text): \(parsed) vs \(expected)") }
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(10))")
    }

    @Test("integers are written digit for digit and read back", arguments: [Int64.min, Int64.min + 1, -1, 0, 7, 10, Int64.max])
    func integers(value: Int64) throws {
        let text = try JSONValue.int(value).jsonString()
        #expect(text == String(value))
        #expect(try JSONValue(parsing: text) == .int(value))
    }
}
