import Foundation

/// A point in wall-clock time with microsecond precision (microseconds since 1970-01-01 UTC).
///
/// Every fact carries one. Along the log they never decrease, so "the state as of time T" has
/// exactly one answer. Written as RFC 3339 UTC with six fractional digits:
/// `2026-12-03T14:05:00.250000Z`.
public struct Instant: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var microseconds: Int64

    public init(microseconds: Int64) { self.microseconds = microseconds }

    public init(_ date: Date) {
        self.microseconds = Int64((date.timeIntervalSince1970 * 1_000_000).rounded(.down))
    }

    /// The current wall-clock time.
    public static func now() -> Instant {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Instant(microseconds: Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000)
    }

    public static func < (a: Instant, b: Instant) -> Bool { a.microseconds < b.microseconds }

    public var date: Date { Date(timeIntervalSince1970: Double(microseconds) / 1_000_000) }

    public func adding(seconds: Double) -> Instant {
        Instant(microseconds: microseconds &+ Int64((seconds * 1_000_000).rounded()))
    }

    public func adding(milliseconds: Int64) -> Instant {
        Instant(microseconds: microseconds &+ milliseconds &* 1000)
    }

    /// Seconds from `self` to `other` (negative when `other` is earlier).
    public func seconds(to other: Instant) -> Double {
        Double(other.microseconds - microseconds) / 1_000_000
    }

    public var description: String { rfc3339 }

    /// RFC 3339 in UTC with exactly six fractional digits.
    public var rfc3339: String {
        var out = [UInt8]()
        out.reserveCapacity(27)
        appendRFC3339(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses exactly the canonical form `YYYY-MM-DDTHH:MM:SS.ffffffZ` (27 bytes), fast.
    init?(canonical b: UnsafeBufferPointer<UInt8>) {
        guard b.count == 27, b[4] == 0x2D, b[7] == 0x2D, b[10] == 0x54, b[13] == 0x3A, b[16] == 0x3A,
            b[19] == 0x2E, b[26] == 0x5A
        else { return nil }
        func digits(_ from: Int, _ n: Int) -> Int64? {
            var v: Int64 = 0
            for i in from..<(from + n) {
                let c = b[i]
                guard c >= 0x30, c <= 0x39 else { return nil }
                v = v * 10 + Int64(c - 0x30)
            }
            return v
        }
        guard let y = digits(0, 4), let mo = digits(5, 2), let d = digits(8, 2), let h = digits(11, 2),
            let mi = digits(14, 2), let s = digits(17, 2), let us = digits(20, 6),
            (1...12).contains(mo), d >= 1, d <= Instant.daysIn(month: mo, year: y), h <= 23, mi <= 59, s <= 59
        else { return nil }
        self.microseconds = (Instant.days(fromCivil: y, mo, d) * 86_400 + h * 3600 + mi * 60 + s) * 1_000_000 + us
    }

    func appendRFC3339(to out: inout [UInt8]) {
        var seconds = microseconds / 1_000_000
        var micros = microseconds % 1_000_000
        if micros < 0 {
            micros += 1_000_000
            seconds -= 1
        }
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 {
            secondOfDay += 86_400
            days -= 1
        }
        let (y, m, d) = Instant.civil(fromDays: days)
        func put(_ value: Int64, width: Int) {
            let start = out.count
            for _ in 0..<width { out.append(0x30) }
            var v = value
            var i = start + width - 1
            while i >= start {
                out[i] = UInt8(0x30 + v % 10)
                v /= 10
                i -= 1
            }
        }
        put(y, width: 4)
        out.append(UInt8(ascii: "-"))
        put(m, width: 2)
        out.append(UInt8(ascii: "-"))
        put(d, width: 2)
        out.append(UInt8(ascii: "T"))
        put(secondOfDay / 3600, width: 2)
        out.append(UInt8(ascii: ":"))
        put(secondOfDay / 60 % 60, width: 2)
        out.append(UInt8(ascii: ":"))
        put(secondOfDay % 60, width: 2)
        out.append(UInt8(ascii: "."))
        put(micros, width: 6)
        out.append(UInt8(ascii: "Z"))
    }

    /// Parses RFC 3339: `2026-12-03T14:05:00Z`, with optional fractional seconds (up to 9 digits,
    /// truncated to microseconds), and `Z` or a `+hh:mm` / `-hh:mm` offset. Lower-case `t`/`z` and a
    /// space instead of `T` are accepted. Returns nil for anything else, including impossible dates.
    public init?(rfc3339 text: String) {
        let b = Array(text.utf8)
        var i = 0
        func number(_ width: Int) -> Int64? {
            guard i + width <= b.count else { return nil }
            var v: Int64 = 0
            for k in i..<(i + width) {
                guard b[k] >= 0x30, b[k] <= 0x39 else { return nil }
                v = v * 10 + Int64(b[k] - 0x30)
            }
            i += width
            return v
        }
        func expect(_ c: UInt8...) -> Bool {
            guard i < b.count, c.contains(b[i]) else { return false }
            i += 1
            return true
        }
        guard let year = number(4), expect(UInt8(ascii: "-")), let month = number(2), expect(UInt8(ascii: "-")),
            let day = number(2), expect(UInt8(ascii: "T"), UInt8(ascii: "t"), UInt8(ascii: " ")),
            let hour = number(2), expect(UInt8(ascii: ":")), let minute = number(2), expect(UInt8(ascii: ":")),
            let second = number(2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= Instant.daysIn(month: month, year: year),
            hour <= 23, minute <= 59, second <= 60
        else { return nil }
        var micros: Int64 = 0
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            var digits = 0
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 {
                if digits < 6 { micros = micros * 10 + Int64(b[i] - 0x30) }
                digits += 1
                i += 1
            }
            guard digits >= 1, digits <= 9 else { return nil }
            for _ in min(digits, 6)..<6 { micros *= 10 }
        }
        var offsetSeconds: Int64 = 0
        if expect(UInt8(ascii: "Z"), UInt8(ascii: "z")) {
            offsetSeconds = 0
        } else if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
            let sign: Int64 = b[i] == UInt8(ascii: "+") ? 1 : -1
            i += 1
            guard let oh = number(2), expect(UInt8(ascii: ":")), let om = number(2), oh <= 23, om <= 59 else { return nil }
            offsetSeconds = sign * (oh * 3600 + om * 60)
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        let days = Instant.days(fromCivil: year, month, day)
        let secondsSinceEpoch = days * 86_400 + hour * 3600 + minute * 60 + min(second, 59) - offsetSeconds
        self.microseconds = secondsSinceEpoch * 1_000_000 + micros
    }

    static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    // Howard Hinnant's days-from-civil algorithms (public domain formulation).
    static func days(fromCivil year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(fromDays days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }
}
