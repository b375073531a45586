import Foundation
import Overseer

// The `overseer` command line. Each subcommand lives in Commands/<Name>.swift and uses only the
// library's public API. Exit codes: 0 success; 1 unsuccessful run or failed verification;
// 2 usage error or invalid input; 3 the store cannot be opened or is damaged.

let code = await CLI.main(Array(CommandLine.arguments.dropFirst()))
Console.flush()
exit(code)
