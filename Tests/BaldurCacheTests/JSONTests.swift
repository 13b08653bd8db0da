@testable import BaldurCache
import Foundation
import Testing

/// The JSON reader's exact fast path for decimals, the writer's integer
/// digits and member order, and the buffer both write into.
@Suite("JSON numbers, member order and the output buffer")
struct JSONTests {
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

    @Test("short strings kept per thread never stand in for other bytes: 20,000 distinct names and values of 0-15 bytes (ASCII, accented, escaped) on 4 threads at once, most sharing slots, each read back exactly; invalid UTF-8 still refused after its valid neighbours were kept")
    func shortStringTable() throws {
        let failures = PlainMutex<[String]>([])
        runOnThreads(4) { thread in
            for round in 0..<5_000 {
                let number = round * 4 + thread
                // Lengths 0...15 in turn, so every length and both words of the key are used.
                // Odd rounds share their first 8 bytes and differ only in the second word.
                let name = round % 2 == 1
                    ? "members_" + String(number, radix: 36)
                    : String(String(number, radix: 36).reversed()).padding(toLength: number % 16, withPad: "x", startingAt: 0)
                let accented = "é\(number % 1000)"
                let text = #"{"\#(name)":"\#(accented)","n\#(number % 7)":"a\"b","":"\#(name)"}"#
                let expected: JSONValue = [name: .string(accented), "n\(number % 7)": "a\"b", "": .string(name)]
                do {
                    let parsed = try JSONValue(parsing: text)
                    if parsed != expected { failures.withLock { $0.append("\(text) read as \(parsed)") } }
                } catch {
                    failures.withLock { $0.append("\(text): \(error)") }
                }
            }
        }
        #expect(failures.withLock { $0 } == [])
        // A kept "ab" and an invalid sequence of the same length: the table never answers for bytes it did not validate.
        _ = try JSONValue(parsing: #"["ab","\#u{e9}"]"#)
        #expect(throws: RedisError.self) { try JSONValue(parsing: [0x22, 0xC3, 0x28, 0x22]) }
        #expect(throws: RedisError.self) { try JSONValue(parsing: [0x22, 0x61, 0xFF, 0x22]) }
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

    @Test("a byte that ends the word-at-a-time string scan is found at every offset and alignment: quote, backslash, control character, DEL, non-ASCII, invalid UTF-8")
    func stringScanStopsAtEveryOffset() throws {
        // (bytes to place, the string they read as, or nil where the text must be refused)
        let cases: [([UInt8], String?)] = [
            (Array(#"\""#.utf8), "\""), (Array(#"\\"#.utf8), "\\"), (Array(#"\n"#.utf8), "\n"),
            ([0x01], nil), ([0x1F], nil), ([0x7F], "\u{7F}"), (Array("é".utf8), "é"), ([0xFF], nil), ([], ""),
        ]
        var mismatches: [String] = []
        for padding in 0..<8 {
            for offset in 0..<24 {
                for (special, expected) in cases {
                    // `padding` spaces shift where the string starts against 8-byte words.
                    let before = Array(repeating: UInt8(ascii: "a"), count: offset)
                    let after = Array("tail-after-the-byte".utf8)
                    let bytes = Array(repeating: UInt8(ascii: " "), count: padding) + [UInt8(ascii: "[")]
                        + [0x22] + before + special + after + [0x22] + Array(#","x"]"#.utf8)
                    let label = "padding \(padding), offset \(offset), bytes \(special)"
                    do {
                        let parsed = try JSONValue(parsing: bytes)
                        let wanted = expected.map { String(repeating: "a", count: offset) + $0 + "tail-after-the-byte" }
                        if wanted == nil || parsed != [.string(wanted!), "x"] { mismatches.append("\(label): read as \(parsed)") }
                    } catch {
                        if expected != nil { mismatches.append("\(label): \(error)") }
                    }
                }
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(10))")
    }

    @Test("integers of 18 digits take the fast path, 19 the checked one; past Int64 they are doubles", arguments: [
        ("999999999999999999", JSONValue.int(999_999_999_999_999_999)), ("-999999999999999999", .int(-999_999_999_999_999_999)),
        ("1000000000000000000", .int(1_000_000_000_000_000_000)), ("9223372036854775807", .int(.max)),
        ("-9223372036854775808", .int(.min)), ("9223372036854775808", .double(9_223_372_036_854_775_808)),
        ("-0", .int(0)), ("0", .int(0)), ("120", .int(120)),
    ])
    func integerDigits(text: String, expected: JSONValue) throws {
        #expect(try JSONValue(parsing: text) == expected)
    }

    @Test("numbers the JSON grammar refuses are refused", arguments: ["01", "-", "1.", ".5", "1e", "1e+", "-a", "1.e5", "+1"])
    func malformedNumbers(text: String) {
        #expect(throws: RedisError.self) { try JSONValue(parsing: text) }
    }

    @Test("integers are written digit for digit and read back", arguments: [Int64.min, Int64.min + 1, -1, 0, 7, 10, Int64.max])
    func integers(value: Int64) throws {
        let text = try JSONValue.int(value).jsonString()
        #expect(text == String(value))
        #expect(try JSONValue(parsing: text) == .int(value))
    }

    @Test("object members are written sorted by name, on the small-record path and the large one", arguments: [0, 1, 2, 5, 16, 17, 60])
    func memberOrder(count: Int) throws {
        var generator = SystemRandomNumberGenerator()
        var members: [String: JSONValue] = [:]
        let names = ["a", "b", "B", "é", "ab", "a\u{0}", "zz", "_", "10", "9", "key", "ke", "\u{1F680}"]
        while members.count < count {
            let name = names.randomElement(using: &generator)! + String(Int.random(in: 0..<1000, using: &generator))
            members[name] = .int(Int64(members.count))
        }
        let text = try JSONValue.object(members).jsonString()
        let expected = "{" + members.keys.sorted().map { key in
            "\(try! JSONValue.string(key).jsonString()):\(members[key]!.intValue!)"
        }.joined(separator: ",") + "}"
        #expect(text == expected)
        #expect(try JSONValue(parsing: text) == .object(members))
    }

    @Test("the output buffer keeps every byte across growth, and shrinks back after a large write")
    func outputBuffer() {
        var buffer = OutputBuffer(capacity: 1)
        var reference: [UInt8] = []
        for round in 0..<300 {
            let chunk = (0..<(round % 37)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ round) }
            chunk.withUnsafeBytes { buffer.append($0) }
            reference += chunk
            buffer.append(UInt8(truncatingIfNeeded: round))
            reference.append(UInt8(truncatingIfNeeded: round))
            buffer.appendDecimal(UInt64(round) * 1_000_003)
            reference += Array(String(UInt64(round) * 1_000_003).utf8)
            buffer.append(utf8: "é\r\n")
            reference += Array("é\r\n".utf8)
        }
        #expect(buffer.bytes == reference)
        #expect(buffer.capacity >= reference.count)
        buffer.removeAll(keepingCapacityUpTo: 64)
        #expect(buffer.count == 0 && buffer.capacity == 64)
        buffer.append(utf8: "after")
        #expect(buffer.bytes == Array("after".utf8))
    }
}
