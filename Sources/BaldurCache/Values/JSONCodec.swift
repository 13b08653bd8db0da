import Foundation

/// How `Codable` values become the JSON an adapter stores, and back.
///
/// ``JSONValue`` never goes through these: it takes a hand-written path that
/// writes the bytes Python Baldur writes (compact, `,` and `:` without
/// spaces, non-ASCII and `/` unescaped; see `WIRE.md`) and reads any JSON.
/// Every other `Codable` type goes through ``encoder`` and ``decoder``.
///
/// The default, ``baldur``, writes dates as ISO 8601 and reads every form
/// Python Baldur writes (ISO 8601 with or without fraction and zone,
/// `YYYY-MM-DD HH:MM:SS`, seconds since 1970). Pass your own to an adapter
/// for other strategies (keys in snake case, dates as numbers):
///
/// ```swift
/// let encoder = JSONEncoder()
/// encoder.keyEncodingStrategy = .convertToSnakeCase
/// let decoder = JSONDecoder()
/// decoder.keyDecodingStrategy = .convertFromSnakeCase
/// let cache = try RedisCacheAdapter(jsonCoders: JSONCoders(encoder: encoder, decoder: decoder))
/// ```
///
/// The adapter encodes and decodes from many threads at once with the same
/// two instances, which `JSONEncoder` and `JSONDecoder` allow; configure
/// them fully before passing them, and do not change them afterwards.
public struct JSONCoders: Sendable {
    /// Encodes values that are not ``JSONValue``.
    public let encoder: JSONEncoder
    /// Decodes values that are not ``JSONValue``.
    public let decoder: JSONDecoder

    /// Coders for `Codable` values other than ``JSONValue``.
    public init(encoder: JSONEncoder, decoder: JSONDecoder) {
        self.encoder = encoder
        self.decoder = decoder
    }

    /// Baldur's coders: ISO 8601 dates out, any date form Python Baldur
    /// writes in, `/` unescaped.
    public static let baldur: JSONCoders = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom(JSONCodec.decodeDate)
        return JSONCoders(encoder: encoder, decoder: decoder)
    }()

    /// The JSON bytes of `value`.
    func encode<T: Encodable>(_ value: T) throws(RedisError) -> [UInt8] {
        if let json = value as? JSONValue { return try JSONWriter.encode(json) }
        do {
            return Array(try encoder.encode(value))
        } catch {
            throw RedisError(.invalidArgument, "\(T.self) cannot be encoded as JSON: \(JSONCodec.summary(error))")
        }
    }

    /// `bytes` decoded as `T`; the error names `key`.
    func decode<T: Decodable>(_ bytes: [UInt8], as type: T.Type, key: String) throws(RedisError) -> T {
        if T.self == JSONValue.self {
            return try JSONCodec.parse(bytes, key: key) as! T
        }
        do {
            return try decoder.decode(T.self, from: Data(bytes))
        } catch {
            // Tell a value that is not JSON at all from JSON of another shape.
            _ = try JSONCodec.parse(bytes, key: key)
            throw RedisError(.decoding, "the value at key '\(key)' is not a \(T.self): \(JSONCodec.summary(error))")
        }
    }
}

/// JSON limits and parsing shared by the writer, the reader and ``JSONCoders``.
enum JSONCodec {
    /// How deeply arrays and objects may nest, for writing and reading
    /// alike: 512 levels. The writer refuses deeper values before anything is
    /// sent, so nothing is stored that the reader would then refuse; and
    /// neither recurses without bound on a hostile value.
    static let maxDepth = 512

    /// Parses `bytes`; the error names `key` when the bytes came from one.
    static func parse(_ bytes: [UInt8], key: String? = nil) throws(RedisError) -> JSONValue {
        do {
            return try JSONReader.parse(bytes)
        } catch {
            let subject = key.map { "the value at key '\($0)' is" } ?? "the text is"
            throw RedisError(.decoding, "\(subject) not valid JSON: \(error.reason)")
        }
    }

    /// Dates as Python writes them: ISO 8601 (with or without fraction and
    /// zone), `YYYY-MM-DD HH:MM:SS`, or seconds since 1970.
    @Sendable static func decodeDate(_ decoder: any Decoder) throws -> Date {
        let container = try decoder.singleValueContainer()
        if let seconds = try? container.decode(Double.self) { return Date(timeIntervalSince1970: seconds) }
        let text = try container.decode(String.self)
        for style in dateStyles {
            if let date = try? Date(text, strategy: style) { return date }
        }
        let pythonStyle = DateFormatter()
        pythonStyle.locale = Locale(identifier: "en_US_POSIX")
        pythonStyle.timeZone = TimeZone(identifier: "UTC")
        for format in ["yyyy-MM-dd HH:mm:ss.SSSSSS", "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd'T'HH:mm:ss.SSSSSS", "yyyy-MM-dd'T'HH:mm:ss"] {
            pythonStyle.dateFormat = format
            if let date = pythonStyle.date(from: text) { return date }
        }
        throw DecodingError.dataCorruptedError(in: container, debugDescription: "not a date in a format Baldur writes")
    }

    private static let dateStyles: [Date.ISO8601FormatStyle] = [
        .iso8601,
        Date.ISO8601FormatStyle(includingFractionalSeconds: true),
    ]

    /// A decoding error's path and explanation, without any of the value's content.
    static func summary(_ error: any Error) -> String {
        func path(_ codingPath: [any CodingKey]) -> String {
            codingPath.isEmpty ? "top level" : codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context),
             DecodingError.dataCorrupted(let context):
            return "\(path(context.codingPath)): \(context.debugDescription)"
        case DecodingError.keyNotFound(let key, let context):
            return "\(path(context.codingPath)): missing member '\(key.stringValue)'"
        case EncodingError.invalidValue(_, let context):
            return "\(path(context.codingPath)): \(context.debugDescription)"
        default:
            return "\(type(of: error))"
        }
    }
}

/// Compact JSON output for ``JSONValue``.
enum JSONWriter {
    /// The JSON bytes of `value`.
    static func encode(_ value: JSONValue) throws(RedisError) -> [UInt8] {
        var output = OutputBuffer(capacity: 128)
        try write(value, into: &output)
        return output.bytes
    }

    /// Throws what ``write(_:into:depth:)`` would for `value` (a NaN or
    /// infinite number, nesting deeper than ``JSONCodec/maxDepth``), without
    /// writing anything.
    static func validate(_ value: JSONValue, depth: Int = 0) throws(RedisError) {
        switch value {
        case .double(let number) where !number.isFinite:
            throw nonFinite(number)
        case .array(let elements):
            try nest(depth)
            for element in elements { try validate(element, depth: depth + 1) }
        case .object(let members):
            try nest(depth)
            for member in members.values { try validate(member, depth: depth + 1) }
        default:
            break
        }
    }

    private static func nonFinite(_ number: Double) -> RedisError {
        RedisError(.invalidArgument, "JSON has no representation for \(number)")
    }

    /// Refuses to open an array or object inside `depth` enclosing ones when
    /// that would pass ``JSONCodec/maxDepth``.
    @inline(__always)
    private static func nest(_ depth: Int) throws(RedisError) {
        guard depth < JSONCodec.maxDepth else {
            throw RedisError(.invalidArgument, "the value nests arrays and objects deeper than \(JSONCodec.maxDepth) levels, which Baldur cannot read back")
        }
    }

    /// Writes `value` inside `depth` enclosing arrays and objects.
    static func write(_ value: JSONValue, into output: inout OutputBuffer, depth: Int = 0) throws(RedisError) {
        switch value {
        case .null: output.append(utf8: "null")
        case .bool(let flag): output.append(utf8: flag ? "true" : "false")
        case .int(let integer):
            if integer < 0 { output.append(UInt8(ascii: "-")) }
            output.appendDecimal(integer.magnitude)
        case .double(let number):
            guard number.isFinite else { throw nonFinite(number) }
            // Swift's shortest round-trip form matches Python's repr: 1.0, 0.1, 1e+100.
            output.append(utf8: number.description)
        case .string(let text): writeString(text, into: &output)
        case .array(let elements):
            try nest(depth)
            output.append(UInt8(ascii: "["))
            for index in elements.indices {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                try write(elements[index], into: &output, depth: depth + 1)
            }
            output.append(UInt8(ascii: "]"))
        case .object(let members):
            try nest(depth)
            output.append(UInt8(ascii: "{"))
            // Sorted, so equal records serialize to equal bytes. The order is
            // kept as dictionary positions on the stack: no copies of the
            // members, no heap allocation for records of ordinary size.
            try withUnsafeTemporaryAllocation(of: Dictionary<String, JSONValue>.Index.self, capacity: members.count) {
                (positions: UnsafeMutableBufferPointer<Dictionary<String, JSONValue>.Index>) throws(RedisError) in
                var order = positions
                _ = order.initialize(from: members.indices)
                defer { order.deinitialize() }
                sortByKey(&order, in: members)
                for position in order.indices {
                    if position > 0 { output.append(UInt8(ascii: ",")) }
                    let member = members[order[position]]
                    writeString(member.key, into: &output)
                    output.append(UInt8(ascii: ":"))
                    try write(member.value, into: &output, depth: depth + 1)
                }
            }
            output.append(UInt8(ascii: "}"))
        }
    }

    /// Sorts dictionary positions by their keys: insertion sort for the few
    /// members records have (no closure, and only keys are read), the
    /// standard sort beyond that.
    private static func sortByKey(
        _ order: inout UnsafeMutableBufferPointer<Dictionary<String, JSONValue>.Index>,
        in members: [String: JSONValue]
    ) {
        let keys = members.keys
        guard order.count <= 16 else {
            order.sort { keys[$0] < keys[$1] }
            return
        }
        var sorted = 1
        while sorted < order.count {
            let next = order[sorted]
            let key = keys[next]
            var slot = sorted
            while slot > 0, key < keys[order[slot - 1]] {
                order[slot] = order[slot - 1]
                slot -= 1
            }
            order[slot] = next
            sorted += 1
        }
    }

    static func writeString(_ text: String, into output: inout OutputBuffer) {
        text.withUTF8Bytes { writeString($0, into: &output) }
    }

    /// Writes UTF-8 `bytes` as a JSON string: quotes, control characters and
    /// backslashes escaped, everything else as is.
    private static func writeString(_ bytes: UnsafeRawBufferPointer, into output: inout OutputBuffer) {
        @inline(__always) func needsEscape(_ byte: UInt8) -> Bool {
            byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
        }
        var firstEscape = 0
        while firstEscape < bytes.count, !needsEscape(bytes[firstEscape]) { firstEscape += 1 }
        if firstEscape == bytes.count {  // the common case: nothing to escape, one copy
            output.reserve(bytes.count + 2)
            output.appendUnchecked(UInt8(ascii: "\""))
            output.appendUnchecked(bytes)
            output.appendUnchecked(UInt8(ascii: "\""))
            return
        }
        output.append(UInt8(ascii: "\""))
        var clean = 0  // start of the run of bytes that need no escaping
        for index in firstEscape..<bytes.count {
            let byte = bytes[index]
            guard needsEscape(byte) else { continue }
            output.append(UnsafeRawBufferPointer(rebasing: bytes[clean..<index]))
            clean = index + 1
            switch byte {
            case UInt8(ascii: "\""): output.append(92, 34)
            case UInt8(ascii: "\\"): output.append(92, 92)
            case 0x0A: output.append(92, UInt8(ascii: "n"))
            case 0x0D: output.append(92, UInt8(ascii: "r"))
            case 0x09: output.append(92, UInt8(ascii: "t"))
            case 0x08: output.append(92, UInt8(ascii: "b"))
            case 0x0C: output.append(92, UInt8(ascii: "f"))
            default:
                let hex: StaticString = "0123456789abcdef"
                output.append(92, UInt8(ascii: "u"))
                output.append(48, 48)
                output.append(hex.utf8Start[Int(byte >> 4)], hex.utf8Start[Int(byte & 15)])
            }
        }
        output.append(UnsafeRawBufferPointer(rebasing: bytes[clean...]))
        output.append(UInt8(ascii: "\""))
    }
}

/// A strict RFC 8259 parser producing ``JSONValue``.
struct JSONReader {
    struct Failure: Error { let reason: String }

    private let bytes: UnsafeBufferPointer<UInt8>
    /// Short strings read before on this thread (member names, mostly).
    private let strings = JSONStringTable.current
    private var index = 0
    private var depth = 0
    private static let maxDepth = JSONCodec.maxDepth

    static func parse(_ bytes: [UInt8]) throws(Failure) -> JSONValue {
        try bytes.withUnsafeBufferPointer { buffer throws(Failure) in
            var reader = JSONReader(bytes: buffer)
            reader.skipWhitespace()
            let value = try reader.value()
            reader.skipWhitespace()
            guard reader.index == buffer.count else { throw reader.failure("unexpected data after the value") }
            return value
        }
    }

    private init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    private func failure(_ reason: String) -> Failure { Failure(reason: "\(reason) at byte \(index)") }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x0A, 0x0D, 0x09: index += 1
            default: return
            }
        }
    }

    private mutating func value() throws(Failure) -> JSONValue {
        guard index < bytes.count else { throw failure(bytes.isEmpty ? "empty value" : "unexpected end") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw failure("unexpected character")
        }
    }

    private mutating func literal(_ word: StaticString) throws(Failure) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count,
              bytes[index..<index + count].elementsEqual(UnsafeBufferPointer(start: word.utf8Start, count: count))
        else { throw failure("invalid literal") }
        index += count
    }

    private mutating func nest() throws(Failure) {
        depth += 1
        guard depth <= Self.maxDepth else { throw failure("nested deeper than \(Self.maxDepth) levels") }
    }

    private mutating func object() throws(Failure) -> JSONValue {
        try nest()
        index += 1
        var members = Self.emptyMembers
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; depth -= 1; return .object(members) }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw failure("expected a member name") }
            let key = try string()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw failure("expected ':'") }
            index += 1
            skipWhitespace()
            members[key] = try value()
            skipWhitespace()
            guard index < bytes.count else { throw failure("unterminated object") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            if bytes[index] == UInt8(ascii: "}") { index += 1; depth -= 1; return .object(members) }
            throw failure("expected ',' or '}'")
        }
    }

    /// An empty object with room for 8 members, which each object read
    /// starts as. The first member copies its storage: a copy made inside
    /// the library's specialized code, where `Dictionary(minimumCapacity:)`
    /// would run the standard library's generic code, looking up the
    /// storage class's metadata (about 340 instructions) each time: about
    /// 400 instructions an object against 840 (callgrind, `mget100`).
    /// Copies keep this one's per-instance seed until
    /// they outgrow it; tables that small cannot show the quadratic merge
    /// that per-instance seeds guard against.
    private static let emptyMembers = [String: JSONValue](minimumCapacity: 8)

    private mutating func array() throws(Failure) -> JSONValue {
        try nest()
        index += 1
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; depth -= 1; return .array([]) }
        var elements: [JSONValue] = []
        elements.reserveCapacity(4)
        while true {
            skipWhitespace()
            elements.append(try value())
            skipWhitespace()
            guard index < bytes.count else { throw failure("unterminated array") }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            if bytes[index] == UInt8(ascii: "]") { index += 1; depth -= 1; return .array(elements) }
            throw failure("expected ',' or ']'")
        }
    }

    private mutating func string() throws(Failure) -> String {
        index += 1
        var scalars: [UInt8] = []
        let start = index
        var ascii = true
        // Fast path: no escapes; ASCII needs no UTF-8 validation. Eight
        // bytes at a time up to the first byte that needs a look of its own.
        index = Self.plainASCIIEnd(bytes, from: index)
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let raw = UnsafeBufferPointer(rebasing: bytes[start..<index])
                @inline(__always) func make(_ raw: UnsafeBufferPointer<UInt8>) -> String? {
                    ascii ? String(decoding: raw, as: UTF8.self) : String(validating: raw, as: UTF8.self)
                }
                let text = raw.count <= JSONStringTable.maxLength ? strings.string(raw, readable: bytes.count &- start, make: make) : make(raw)
                guard let text else { throw failure("invalid UTF-8 in a string") }
                index += 1
                return text
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw failure("unescaped control character in a string") }
            if byte >= 0x80 { ascii = false }
            index += 1
        }
        scalars.append(contentsOf: bytes[start..<index])
        while index < bytes.count {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                guard let text = String(validating: scalars, as: UTF8.self) else { throw failure("invalid UTF-8 in a string") }
                return text
            case UInt8(ascii: "\\"):
                guard index < bytes.count else { throw failure("unterminated escape") }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scalars.append(escape)
                case UInt8(ascii: "n"): scalars.append(0x0A)
                case UInt8(ascii: "r"): scalars.append(0x0D)
                case UInt8(ascii: "t"): scalars.append(0x09)
                case UInt8(ascii: "b"): scalars.append(0x08)
                case UInt8(ascii: "f"): scalars.append(0x0C)
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if (0xD800..<0xDC00).contains(code) {
                        guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                            throw failure("unpaired surrogate")
                        }
                        index += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw failure("unpaired surrogate") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(code) {
                        throw failure("unpaired surrogate")
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw failure("invalid \\u escape") }
                    scalars.append(contentsOf: String(Character(scalar)).utf8)
                default: throw failure("invalid escape")
                }
            default:
                if byte < 0x20 { throw failure("unescaped control character in a string") }
                scalars.append(byte)
            }
        }
        throw failure("unterminated string")
    }

    /// The index of the first byte at or after `start` that is a quote, a
    /// backslash, a control character or not ASCII, reading whole 8-byte
    /// words while eight bytes remain; at most `bytes.count`, and short of
    /// the first such byte when fewer than eight bytes remain (the caller
    /// reads on byte by byte).
    ///
    /// Per byte `b` of a little-endian word, `(w - 0x01…) & ~w & 0x80…`
    /// flags the zero bytes: every flag below the first true one is exact (a
    /// borrow only runs upwards), so the lowest flag of each test, and of
    /// their union, is a true one.
    @inline(__always)
    static func plainASCIIEnd(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        guard let base = bytes.baseAddress else { return start }
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        var index = start
        while bytes.count &- index >= 8 {
            let word = UInt64(littleEndian: UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self))
            let quote = word ^ (ones &* 0x22)
            let backslash = word ^ (ones &* 0x5C)
            var flags = (quote &- ones) & ~quote
            flags |= (backslash &- ones) & ~backslash
            flags |= (word &- ones &* 0x20) & ~word  // below 0x20
            flags = (flags | word) & highs  // or 0x80 and above
            if flags != 0 { return index &+ flags.trailingZeroBitCount / 8 }
            index &+= 8
        }
        return index
    }

    private mutating func hex4() throws(Failure) -> UInt32 {
        guard index + 4 <= bytes.count else { throw failure("short \\u escape") }
        var code: UInt32 = 0
        for byte in bytes[index..<index + 4] {
            code <<= 4
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): code |= UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): code |= UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): code |= UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw failure("invalid \\u escape")
            }
        }
        index += 4
        return code
    }

    private mutating func number() throws(Failure) -> JSONValue {
        let start = index
        let negative = bytes[index] == UInt8(ascii: "-")
        if negative { index += 1 }
        // The digits before and after the point, read into `mantissa` as
        // they are checked (at most 19 of them fit it without overflow).
        var mantissa: UInt64 = 0
        var digits = 0
        guard index < bytes.count, Self.isDigit(bytes[index]) else { throw failure("invalid number") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            digits = 1
        } else {
            while index < bytes.count, Self.isDigit(bytes[index]) {
                if digits < 19 { mantissa = mantissa &* 10 &+ UInt64(bytes[index] &- UInt8(ascii: "0")) }
                digits += 1
                index += 1
            }
        }
        var fractionDigits = 0
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            while index < bytes.count, Self.isDigit(bytes[index]) {
                if digits < 19 { mantissa = mantissa &* 10 &+ UInt64(bytes[index] &- UInt8(ascii: "0")) }
                digits += 1
                fractionDigits += 1
                index += 1
            }
            guard fractionDigits > 0 else { throw failure("invalid number") }
        }
        var hasExponent = false
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            hasExponent = true
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            let exponentDigits = index
            while index < bytes.count, Self.isDigit(bytes[index]) { index += 1 }
            guard index > exponentDigits else { throw failure("invalid number") }
        }
        if !hasExponent {
            if fractionDigits == 0 {
                // An integer: up to 18 digits are exact in `mantissa`, and within Int64.
                if digits <= 18 { return .int(negative ? -Int64(mantissa) : Int64(mantissa)) }
            } else if digits <= 15 {
                // Clinger's fast path (see `exactDouble`), the digits already read.
                let value = Double(mantissa) / Self.exactPowersOfTen[fractionDigits]
                return .double(negative ? -value : value)
            }
        }
        let text = UnsafeBufferPointer(rebasing: bytes[start..<index])
        if !hasExponent && fractionDigits == 0, let integer = Self.integer(text) { return .int(integer) }
        if let number = Self.exactDouble(text) { return .double(number) }
        let decimal = String(decoding: text, as: UTF8.self)
        guard let number = Double(decimal), number.isFinite else { throw failure("number out of range") }
        return .double(number)
    }

    @inline(__always)
    private static func isDigit(_ byte: UInt8) -> Bool { byte &- UInt8(ascii: "0") < 10 }

    /// The powers of ten that a `Double` holds exactly.
    private static let exactPowersOfTen: [Double] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ]

    /// Clinger's fast path for validated number text: with at most 15
    /// significant digits the digits are an exact `Double`, and so is 10^k
    /// for k <= 22, so one IEEE multiplication or division gives the correctly
    /// rounded value `strtod` would. `nil` sends the text to `Double(_:)`.
    private static func exactDouble(_ text: UnsafeBufferPointer<UInt8>) -> Double? {
        var index = 0
        let negative = text[0] == UInt8(ascii: "-")
        if negative { index = 1 }
        var mantissa: UInt64 = 0
        var significantDigits = 0
        var exponent = 0
        var afterPoint = false
        while index < text.count {
            let byte = text[index]
            if byte == UInt8(ascii: ".") {
                afterPoint = true
            } else if byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") {
                break
            } else {
                if afterPoint { exponent -= 1 }
                if mantissa != 0 || byte != UInt8(ascii: "0") {
                    significantDigits += 1
                    guard significantDigits <= 15 else { return nil }
                    mantissa = mantissa * 10 + UInt64(byte &- UInt8(ascii: "0"))
                }
            }
            index += 1
        }
        if index < text.count {
            index += 1
            var negativeExponent = false
            if text[index] == UInt8(ascii: "-") || text[index] == UInt8(ascii: "+") {
                negativeExponent = text[index] == UInt8(ascii: "-")
                index += 1
            }
            guard text.count - index <= 4 else { return nil }
            var written = 0
            while index < text.count {
                written = written * 10 + Int(text[index] &- UInt8(ascii: "0"))
                index += 1
            }
            exponent += negativeExponent ? -written : written
        }
        var value = Double(mantissa)
        if mantissa != 0 {
            guard exponent >= -22, exponent <= 22 else { return nil }
            value = exponent < 0 ? value / exactPowersOfTen[-exponent] : value * exactPowersOfTen[exponent]
        }
        return negative ? -value : value
    }

    /// The value of validated integer digits (with an optional leading `-`), or `nil` past `Int64`.
    private static func integer(_ digits: UnsafeBufferPointer<UInt8>) -> Int64? {
        let negative = digits.first == UInt8(ascii: "-")
        var value: Int64 = 0
        for digit in digits.dropFirst(negative ? 1 : 0) {
            let (shifted, overflowShift) = value.multipliedReportingOverflow(by: 10)
            let (next, overflowAdd) = negative
                ? shifted.subtractingReportingOverflow(Int64(digit &- 48))
                : shifted.addingReportingOverflow(Int64(digit &- 48))
            if overflowShift || overflowAdd { return nil }
            value = next
        }
        return value
    }
}
