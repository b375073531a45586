/// "Did you mean" suggestions for misspelt names: job types, handler names, pipeline fields.
///
/// A candidate is close enough when its Damerau–Levenshtein distance (optimal string alignment:
/// insertions, deletions, substitutions and swaps of two neighbours, counted in Characters) is at
/// most `max(1, name.count / 3)`. Closest wins; ties go to the candidate that sorts first, so the
/// suggestion is deterministic.
enum Suggest {
    /// The largest distance at which `name` still gets a suggestion.
    static func threshold(for name: String) -> Int {
        max(1, name.count / 3)
    }

    /// The closest candidate within ``threshold(for:)`` of `name`, or `nil`.
    static func closest(to name: String, among candidates: some Sequence<String>) -> String? {
        let target = Array(name)
        let limit = threshold(for: name)
        var best: (name: String, distance: Int)?
        for candidate in candidates where candidate != name {
            let other = Array(candidate)
            // The distance is at least the difference in length: skip the table when that is too far.
            if abs(other.count - target.count) > limit { continue }
            let d = distance(target, other)
            guard d <= limit else { continue }
            if let current = best, current.distance < d || (current.distance == d && current.name <= candidate) {
                continue
            }
            best = (candidate, d)
        }
        return best?.name
    }

    /// `" (did you mean 'x'?)"` when a candidate is close to `name`, else `""`.
    static func didYouMean(_ name: String, among candidates: some Sequence<String>) -> String {
        guard let match = closest(to: name, among: candidates) else { return "" }
        return " (did you mean \(quotedName(match))?)"
    }

    /// The optimal-string-alignment distance between two strings, counted in Characters.
    static func distance(_ a: String, _ b: String) -> Int {
        distance(Array(a), Array(b))
    }

    static func distance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        let width = b.count + 1
        // Three rows of the dynamic-programming table: two back (for swaps), previous, current.
        var twoBack = [Int](repeating: 0, count: width)
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: width)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                var value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    value = min(value, twoBack[j - 2] + 1)
                }
                current[j] = value
            }
            swap(&twoBack, &previous)
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
