import Condense
import Foundation
import HTTPTypes
import Hummingbird

/// An error answered to the client in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`,
/// with its HTTP status (and headers such as `Retry-After`).
public struct APIError: Error, Sendable, Equatable {
    public let status: HTTPResponse.Status
    public let message: String
    public let param: String?
    public let retryAfter: Int?

    /// An error answer: its status, a message for the client, the field at fault and a Retry-After when retrying helps.
    public init(_ status: HTTPResponse.Status, _ message: String, param: String? = nil, retryAfter: Int? = nil) {
        self.status = status
        self.message = message
        self.param = param
        self.retryAfter = retryAfter
    }

    /// What a generation that failed on the engine answers: memory that could not be had is a
    /// 503 to retry (the server stays up), options or input the model refuses a 400, anything
    /// else a 500 — by the error's case, not its text.
    public init(generationFailure e: CondenseError) {
        switch e {
        case .outOfMemory: self.init(.serviceUnavailable, "\(e); retry later", retryAfter: 1)
        case .invalidArgument, .invalidInput: self.init(.badRequest, "\(e)")
        default: self.init(.internalServerError, "\(e)")
        }
    }

    /// OpenAI's error type for the status.
    var type: String {
        switch status.code {
        case 401: return "authentication_error"
        case 404: return "not_found_error"
        case 413: return "request_too_large"
        case 429: return "rate_limit_error"
        case 500...: return "server_error"
        default: return "invalid_request_error"
        }
    }

    func response() -> Response {
        var error: [String: Any] = ["message": message, "type": type, "code": NSNull(), "param": param ?? NSNull()]
        if status.code == 429 { error["code"] = "queue_full" }
        var headers: HTTPFields = [.contentType: "application/json"]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: JSON.encode(["error": error]))))
    }
}

/// JSON in and out with the checks a public endpoint needs: every field's type is checked and a
/// wrong one is a 400 naming the field and what was seen.
enum JSON {
    static func encode(_ object: Any) -> [UInt8] {
        // Only values built here (strings, numbers, arrays, dictionaries) reach this: it cannot fail.
        (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])).map { [UInt8]($0) } ?? Array("{}".utf8)
    }

    static func response(_ object: Any, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: encode(object))))
    }

    /// The body as a JSON object.
    static func object(_ body: ByteBuffer) throws -> [String: Any] {
        let data = Data(buffer: body)
        let value: Any
        do {
            value = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            throw APIError(.badRequest, "the body is not valid JSON (\(data.count) bytes)")
        }
        guard let o = value as? [String: Any] else { throw APIError(.badRequest, "the body must be a JSON object, got \(kind(value))") }
        return o
    }

    static func kind(_ v: Any) -> String {
        switch v {
        case is NSNull: return "null"
        case let n as NSNumber: return isBool(n) ? "a boolean" : "a number"
        case is String: return "a string"
        case is [Any]: return "an array"
        case is [String: Any]: return "an object"
        default: return "\(type(of: v))"
        }
    }

    /// JSON's true/false arrive as NSNumbers of type char ("c"), numbers as "q" or "d".
    static func isBool(_ v: Any) -> Bool { (v as? NSNumber)?.isJSONBoolean ?? false }
}

/// Typed access to a request's fields.
struct Fields {
    let o: [String: Any]
    /// The body's bytes, for the routes that decode it as a `Decodable` type.
    var data = Data()

    func present(_ k: String) -> Bool { o[k] != nil && !(o[k] is NSNull) }

    func string(_ k: String) throws -> String? {
        guard present(k) else { return nil }
        guard let s = o[k] as? String else { throw APIError(.badRequest, "'\(k)' must be a string, got \(JSON.kind(o[k]!))", param: k) }
        return s
    }

    func bool(_ k: String) throws -> Bool? {
        guard present(k) else { return nil }
        guard JSON.isBool(o[k]!), let b = o[k] as? Bool else { throw APIError(.badRequest, "'\(k)' must be a boolean, got \(JSON.kind(o[k]!))", param: k) }
        return b
    }

    func number(_ k: String, _ range: ClosedRange<Double>) throws -> Double? {
        guard present(k) else { return nil }
        guard !JSON.isBool(o[k]!), let n = o[k] as? NSNumber else { throw APIError(.badRequest, "'\(k)' must be a number, got \(JSON.kind(o[k]!))", param: k) }
        let v = n.doubleValue
        guard v.isFinite, range.contains(v) else { throw APIError(.badRequest, "'\(k)' must be in \(range.lowerBound)…\(range.upperBound), got \(v)", param: k) }
        return v
    }

    func integer(_ k: String, _ range: ClosedRange<Int>) throws -> Int? {
        guard let v = try number(k, Double(range.lowerBound)...Double(range.upperBound)) else { return nil }
        // Double(Int.max) rounds up to 2^63, which passes the range check but is not an Int.
        guard let i = Int(exactly: v), range.contains(i) else { throw APIError(.badRequest, "'\(k)' must be an integer in \(range.lowerBound)…\(range.upperBound), got \(v)", param: k) }
        return i
    }
}
