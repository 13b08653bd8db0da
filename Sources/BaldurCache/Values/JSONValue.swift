/// A JSON value, for records whose shape is only known at run time
/// (the dicts Python Baldur services store).
///
/// Literals build values directly:
/// ```swift
/// let record: JSONValue = ["status": "executing", "started_at": 1732640000.5, "attempts": 1]
/// try cache.set("job:42", record)
/// let status = try cache.get("job:42")?["status"]?.stringValue   // "executing"
/// ```
///
/// Integers are kept apart from floating-point numbers, as Python does: `1`
/// and `1.0` are different values, and `JSONValue.int(1) != .double(1.0)`.
/// Integers beyond the range of `Int64` (Python allows any size) decode as
/// `.double` and may lose precision.
public enum JSONValue: Sendable, Hashable {
    /// JSON `null` (Python `None`).
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// A number written without fraction or exponent that fits `Int64` (Python `int`).
    case int(Int64)
    /// Any other number (Python `float`); NaN and infinities cannot be stored.
    case double(Double)
    /// A string.
    case string(String)
    /// An array (Python `list`).
    case array([JSONValue])
    /// An object (Python `dict`); stored with its members sorted by name.
    case object([String: JSONValue])

    /// The member `key` of an object; `nil` for a missing member or a non-object.
    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    /// The element at `index` of an array; `nil` when out of range or not an array.
    public subscript(index: Int) -> JSONValue? {
        if case .array(let elements) = self, elements.indices.contains(index) { return elements[index] }
        return nil
    }

    /// The string of a `.string`; `nil` otherwise.
    public var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }

    /// The integer of an `.int`, or of a `.double` with no fractional part; `nil` otherwise.
    public var intValue: Int64? {
        switch self {
        case .int(let value): return value
        case .double(let value) where value.rounded() == value && abs(value) < 9.2e18: return Int64(value)
        default: return nil
        }
    }

    /// The number of an `.int` or `.double`; `nil` otherwise.
    public var doubleValue: Double? {
        switch self {
        case .int(let value): return Double(value)
        case .double(let value): return value
        default: return nil
        }
    }

    /// The flag of a `.bool`; `nil` otherwise.
    public var boolValue: Bool? {
        if case .bool(let flag) = self { return flag }
        return nil
    }

    /// The members of an `.object`; `nil` otherwise.
    public var objectValue: [String: JSONValue]? {
        if case .object(let members) = self { return members }
        return nil
    }

    /// The elements of an `.array`; `nil` otherwise.
    public var arrayValue: [JSONValue]? {
        if case .array(let elements) = self { return elements }
        return nil
    }

    /// `true` for `.null`.
    public var isNull: Bool { self == .null }
}

extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    /// `nil` is `.null`.
    public init(nilLiteral: ()) { self = .null }
    /// `true` / `false` are `.bool`.
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    /// Integer literals are `.int`.
    public init(integerLiteral value: Int64) { self = .int(value) }
    /// Floating-point literals are `.double`.
    public init(floatLiteral value: Double) { self = .double(value) }
    /// String literals are `.string`.
    public init(stringLiteral value: String) { self = .string(value) }
    /// Array literals are `.array`.
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    /// Dictionary literals are `.object`; a repeated key keeps its last value.
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}

extension JSONValue: Codable {
    /// Decodes any JSON value through a `Decoder`. Note that `JSONDecoder` does not tell
    /// `1` from `1.0`; the adapters' own parser does.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let flag = try? container.decode(Bool.self) {
            self = .bool(flag)
        } else if let integer = try? container.decode(Int64.self) {
            self = .int(integer)
        } else if let number = try? container.decode(Double.self) {
            self = .double(number)
        } else if let text = try? container.decode(String.self) {
            self = .string(text)
        } else if let elements = try? container.decode([JSONValue].self) {
            self = .array(elements)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    /// Encodes the value through an `Encoder`.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let flag): try container.encode(flag)
        case .int(let integer): try container.encode(integer)
        case .double(let number): try container.encode(number)
        case .string(let text): try container.encode(text)
        case .array(let elements): try container.encode(elements)
        case .object(let members): try container.encode(members)
        }
    }
}

extension JSONValue {
    /// Parses JSON text (RFC 8259, strict) into a value.
    ///
    /// - Throws: ``RedisError/Code/decoding`` saying what is wrong and where.
    public init(parsing text: String) throws(RedisError) {
        self = try JSONCodec.parse(Array(text.utf8))
    }

    /// Parses JSON bytes (RFC 8259, strict) into a value.
    ///
    /// - Throws: ``RedisError/Code/decoding`` saying what is wrong and where.
    public init(parsing bytes: [UInt8]) throws(RedisError) {
        self = try JSONCodec.parse(bytes)
    }

    /// The compact JSON text BaldurCache stores for this value (object members sorted).
    ///
    /// - Throws: ``RedisError/Code/invalidArgument`` for a NaN or infinite number.
    public func jsonString() throws(RedisError) -> String {
        String(decoding: try JSONWriter.encode(self), as: UTF8.self)
    }
}
