/// Why a ``JobGraph`` is not valid: a stable ``code``, the job it concerns, and a message that
/// names the problem and the place.
///
/// ```swift
/// do { try graph.validate() } catch {
///     print(error)   // job 'finish' depends on unknown job 'reslt2' (did you mean 'result2'?)
/// }
/// ```
public struct GraphError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kind of problem; stable across releases, so callers can branch on it.
    public enum Code: String, Sendable {
        /// The graph has no job types.
        case empty
        /// A job type name is empty, only whitespace, too long, or contains `/` or a control character.
        case invalidName
        /// A job waits for a type that is not in the graph.
        case unknownParent
        /// A job waits for itself.
        case selfDependency
        /// A job lists the same parent twice.
        case duplicateParent
        /// A dictionary literal gave the same job type more than once.
        case duplicateType
        /// Jobs wait for each other in a loop.
        case cycle
        /// A job type has no registered handler.
        case missingHandler
    }

    /// The kind of problem.
    public let code: Code
    /// The job type the problem is about (for a cycle, the first job named in it), if any.
    public let job: String?
    /// A sentence naming the problem and the place, ready to show a user.
    public let message: String
    /// The ``message``.
    public var description: String { message }

    /// Creates an error; the library's own errors come from ``JobGraph/validate()``.
    public init(code: Code, job: String?, message: String) {
        self.code = code
        self.job = job
        self.message = message
    }
}

/// `name` in single quotes, with control characters (general category Cc) written as `\u{0007}`
/// so that a bad name is visible in a message instead of ringing a bell or breaking a line.
func quotedName(_ name: String) -> String {
    "'" + escapingControls(name) + "'"
}

/// `text` with each control character (general category Cc) replaced by `\u{XXXX}`.
func escapingControls(_ text: String) -> String {
    guard text.unicodeScalars.contains(where: isControlScalar) else { return text }
    var out = ""
    for scalar in text.unicodeScalars {
        if isControlScalar(scalar) {
            out += escapeScalar(scalar)
        } else {
            out.unicodeScalars.append(scalar)
        }
    }
    return out
}

func isControlScalar(_ scalar: Unicode.Scalar) -> Bool {
    scalar.properties.generalCategory == .control
}

/// `\u{0007}`: at least four uppercase hex digits.
func escapeScalar(_ scalar: Unicode.Scalar) -> String {
    let hex = String(scalar.value, radix: 16, uppercase: true)
    return "\\u{" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex + "}"
}
