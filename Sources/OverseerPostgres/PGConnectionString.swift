import CLibPQ
import Foundation

// Connection strings: libpq takes a URI (postgres://user:password@host:port/db?key=value) or a
// key=value list (host=h password='p w'). These helpers never connect; they redact a string for
// messages and add Overseer's defaults. Both work on UTF-8 bytes: every delimiter is ASCII.

/// Password-safe form of a connection string, for messages and logs: postgres://user:***@host:5432/db,
/// password=*** in key=value form, and `?password=` / `&sslpassword=` query parameters.
///
/// It is deliberately lenient, and errs on the side of hiding too much: in a URI everything between
/// the first ':' after the scheme and the *last* '@' is taken for the password, so a password with
/// raw '@', ':', '/' or '?' is hidden whole (even though libpq itself would misread such a URI), and
/// so is a '%'-escaped one. A key=value string that cannot be parsed is cut at the first token that
/// does not parse, which is replaced by `***`.
public func redactConnectionString(_ s: String) -> String {
    ConnectionStringRedaction(s).text
}

/// Adds libpq options when the caller did not set them, in the string or in libpq's environment
/// variables (PGCONNECT_TIMEOUT, PGAPPNAME, ...): connect_timeout=5, keepalives=1, keepalives_idle=5,
/// keepalives_interval=2, keepalives_count=3, tcp_user_timeout=10000 (ms), application_name=overseer.
/// With them a dead server or network link fails a connection attempt in about 5 s, and a query on an
/// established connection in about 10 s (TCP keepalives and TCP_USER_TIMEOUT), instead of hanging.
///
/// URIs get query parameters (`?` or `&`), key=value strings get more pairs. libpq's own parser
/// checks the result: a string it cannot parse, or cannot extend without changing what it says, is
/// returned unchanged (the connection attempt then reports the problem).
public func withConnectionDefaults(_ s: String) -> String {
    let defaults: [(String, String)] = [
        ("connect_timeout", "5"), ("keepalives", "1"), ("keepalives_idle", "5"), ("keepalives_interval", "2"),
        ("keepalives_count", "3"), ("tcp_user_timeout", "10000"), ("application_name", "overseer"),
    ]
    guard let given = parseConnectionOptions(s) else { return s }
    let fromEnvironment = optionsSetByEnvironment()
    let missing = defaults.filter { given[$0.0] == nil && !fromEnvironment.contains($0.0) }
    if missing.isEmpty { return s }
    var expected = given
    for (k, v) in missing { expected[k] = v }
    let candidates: [String]
    if ConnectionStringRedaction.uriPrefixLength(Array(s.utf8)) != nil {
        let query = missing.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
        candidates = [s + "?" + query, s + "&" + query]
    } else {
        let pairs = missing.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
        let trimmed = s.trimmingCharacters(in: .whitespaces)
        candidates = [trimmed.isEmpty ? pairs : s + " " + pairs]
    }
    for c in candidates where parseConnectionOptions(c) == expected { return c }
    return s
}

/// The options a connection string sets explicitly, as libpq's PQconninfoParse reads them (values
/// percent-decoded and unquoted); nil when libpq cannot parse it. Environment defaults are not applied.
func parseConnectionOptions(_ s: String) -> [String: String]? {
    var error: UnsafeMutablePointer<CChar>?
    guard let options = PQconninfoParse(s, &error) else {
        if let error { PQfreemem(error) }
        return nil
    }
    defer { PQconninfoFree(options) }
    var out: [String: String] = [:]
    var p = options
    while let keyword = p.pointee.keyword {
        if let value = p.pointee.val { out[String(cString: keyword)] = String(cString: value) }
        p += 1
    }
    return out
}

/// libpq's keywords (password, host, ...), for telling a keyword from a fragment of a value.
func libpqKeywords() -> Set<String> {
    guard let options = PQconndefaults() else { return [] }
    defer { PQconninfoFree(options) }
    var out: Set<String> = []
    var p = options
    while let keyword = p.pointee.keyword {
        out.insert(String(cString: keyword))
        p += 1
    }
    return out
}

/// The keywords whose environment variable (PGCONNECT_TIMEOUT, PGAPPNAME, ...) is set and non-empty.
private func optionsSetByEnvironment() -> Set<String> {
    guard let options = PQconndefaults() else { return [] }
    defer { PQconninfoFree(options) }
    var out: Set<String> = []
    var p = options
    while let keyword = p.pointee.keyword {
        if let env = p.pointee.envvar, let value = getenv(env), value.pointee != 0 {
            out.insert(String(cString: keyword))
        }
        p += 1
    }
    return out
}

/// A redacted connection string, and the secrets it hid (raw and decoded), for scrubbing messages.
struct ConnectionStringRedaction {
    static let secretKeys: Set<String> = ["password", "sslpassword"]
    private static let stars = Array("***".utf8)

    private(set) var text = ""
    private(set) var secrets: [String] = []

    init(_ s: String) {
        let b = Array(s.utf8)
        let out: [UInt8]
        if let prefix = Self.uriPrefixLength(b) {
            out = redactURI(b, prefix)
        } else if b.contains(UInt8(ascii: "=")) {
            out = redactKeyValue(b)
        } else {
            out = b  // a bare database name (expanded by PQconnectdbParams); nothing secret in it
        }
        text = String(decoding: out, as: UTF8.self)
    }

    /// Length of leading blanks plus "postgresql://" or "postgres://" (any case), when `b` is a URI.
    static func uriPrefixLength(_ b: [UInt8]) -> Int? {
        var i = 0
        while i < b.count, b[i] == UInt8(ascii: " ") || b[i] == UInt8(ascii: "\t") || b[i] == UInt8(ascii: "\n") { i += 1 }
        for scheme in ["postgresql://", "postgres://"] {
            let sb = Array(scheme.utf8)
            if b.count - i >= sb.count, zip(b[i...], sb).allSatisfy({ lower($0) == $1 }) { return i + sb.count }
        }
        return nil
    }

    private static func lower(_ c: UInt8) -> UInt8 {
        c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") ? c + 32 : c
    }

    private mutating func keep(_ secret: ArraySlice<UInt8>, decoded: [UInt8]) {
        secrets.append(String(decoding: secret, as: UTF8.self))
        secrets.append(String(decoding: decoded, as: UTF8.self))
    }

    private mutating func redactURI(_ b: [UInt8], _ prefix: Int) -> [UInt8] {
        var out = Array(b[..<prefix])
        var rest = Array(b[prefix...])
        // user:password@ — the password runs to the last '@', so raw '@', '/', ':' or '?' in it stay hidden.
        if let at = rest.lastIndex(of: UInt8(ascii: "@")), let colon = rest[..<at].firstIndex(of: UInt8(ascii: ":")) {
            let secret = rest[(colon + 1)..<at]
            keep(secret, decoded: Self.percentDecoded(secret))
            rest.replaceSubrange((colon + 1)..<at, with: Self.stars)
        }
        // ?password=... and &sslpassword=...: the value runs to the next '&' that starts another key=value.
        var i = 0
        while i < rest.count {
            defer { i += 1 }
            guard rest[i] == UInt8(ascii: "?") || rest[i] == UInt8(ascii: "&") else { continue }
            var j = i + 1
            while j < rest.count, rest[j] != UInt8(ascii: "="), rest[j] != UInt8(ascii: "&") { j += 1 }
            guard j < rest.count, rest[j] == UInt8(ascii: "=") else { continue }
            let key = String(decoding: Self.percentDecoded(rest[(i + 1)..<j]).map(Self.lower), as: UTF8.self)
            guard Self.secretKeys.contains(key) else { continue }
            var end = j + 1
            while end < rest.count, !(rest[end] == UInt8(ascii: "&") && Self.startsKeyValue(rest, end + 1)) { end += 1 }
            let secret = rest[(j + 1)..<end]
            keep(secret, decoded: Self.percentDecoded(secret))
            rest.replaceSubrange((j + 1)..<end, with: Self.stars)
        }
        out += rest
        return out
    }

    /// Whether `b[i...]` starts with `key=` (letters, digits, '_', '%').
    private static func startsKeyValue(_ b: [UInt8], _ i: Int) -> Bool {
        var j = i
        while j < b.count, isKeyByte(b[j]) { j += 1 }
        return j > i && j < b.count && b[j] == UInt8(ascii: "=")
    }

    private static func isKeyByte(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
            || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "_") || c == UInt8(ascii: "%")
    }

    private static func isSpace(_ c: UInt8) -> Bool {
        c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") || c == UInt8(ascii: "\n") || c == UInt8(ascii: "\r")
            || c == 0x0B || c == 0x0C
    }

    /// key = value pairs as libpq reads them: a value is 'quoted' (\' and \\ escapes) or runs to the
    /// next blank (backslash escapes too). A token that does not parse, and all after it, become ***.
    private mutating func redactKeyValue(_ b: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        func copyBlanks() {
            while i < b.count, Self.isSpace(b[i]) { out.append(b[i]); i += 1 }
        }
        while true {
            copyBlanks()
            if i == b.count { break }
            let keyStart = i
            while i < b.count, b[i] != UInt8(ascii: "="), !Self.isSpace(b[i]) { i += 1 }
            let key = String(decoding: b[keyStart..<i], as: UTF8.self).lowercased()
            let afterKey = i
            while i < b.count, Self.isSpace(b[i]) { i += 1 }
            guard i < b.count, b[i] == UInt8(ascii: "=") else {
                // Not key=value: possibly a piece of a password with a blank in it. Hide the rest.
                let rest = b[keyStart...]
                keep(rest, decoded: Array(rest))
                out += Self.stars
                break
            }
            out += b[keyStart..<afterKey]
            out += b[afterKey...i]
            i += 1
            copyBlanks()
            let valueStart = i
            var value: [UInt8] = []
            var quoted = false
            if i < b.count, b[i] == UInt8(ascii: "'") {
                quoted = true
                i += 1
                while i < b.count, b[i] != UInt8(ascii: "'") {
                    if b[i] == UInt8(ascii: "\\"), i + 1 < b.count { i += 1 }
                    value.append(b[i])
                    i += 1
                }
                if i < b.count { i += 1 }  // the closing quote; an unterminated value runs to the end
            } else {
                while i < b.count, !Self.isSpace(b[i]) {
                    if b[i] == UInt8(ascii: "\\"), i + 1 < b.count { i += 1 }
                    value.append(b[i])
                    i += 1
                }
            }
            if Self.secretKeys.contains(key) {
                keep(b[valueStart..<i], decoded: value)
                out += Self.stars
            } else if Self.uriPrefixLength(value) != nil {
                // dbname='postgres://user:pw@host/db' — a URI inside a value.
                let inner = ConnectionStringRedaction(String(decoding: value, as: UTF8.self))
                secrets += inner.secrets
                if quoted { out.append(UInt8(ascii: "'")) }
                out += Array(inner.text.utf8)
                if quoted { out.append(UInt8(ascii: "'")) }
            } else {
                out += b[valueStart..<i]
            }
        }
        return out
    }

    static func percentDecoded(_ s: ArraySlice<UInt8>) -> [UInt8] {
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var out: [UInt8] = []
        var i = s.startIndex
        while i < s.endIndex {
            if s[i] == UInt8(ascii: "%"), i + 2 < s.endIndex, let h = hex(s[i + 1]), let l = hex(s[i + 2]) {
                out.append(h << 4 | l)
                i += 3
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return out
    }
}

/// Replaces every secret, and the pieces of it between URI delimiters when three bytes or longer, by
/// `***` in `text`. A whole secret goes at any length; the pieces are there for the malformed URIs
/// libpq splits in its own way (user:p@ss@host reads as password "p", host "ss@host").
struct Scrubber: Sendable {
    private let secrets: [String]
    private let conninfo: String
    private let redacted: String

    init(conninfo: String, redacted: String, secrets: [String]) {
        var all: Set<String> = []
        for s in secrets where !s.isEmpty {
            all.insert(s)
            let delimiters: Set<Character> = ["@", ":", "/", "?", "&", ",", "=", " ", "'"]
            for piece in s.split(whereSeparator: { delimiters.contains($0) }) where piece.utf8.count >= 3 {
                all.insert(String(piece))
            }
        }
        self.secrets = all.sorted { $0.utf8.count > $1.utf8.count }
        self.conninfo = conninfo
        self.redacted = redacted
    }

    /// Whether `piece` is part of a secret, or holds one.
    func touches(_ piece: String) -> Bool {
        secrets.contains { $0.contains(piece) || piece.contains($0) }
    }

    func callAsFunction(_ text: String) -> String {
        var t = text
        if !conninfo.isEmpty, conninfo != redacted { t = t.replacingOccurrences(of: conninfo, with: redacted) }
        for s in secrets where t.contains(s) { t = t.replacingOccurrences(of: s, with: "***") }
        return t
    }
}
