// The `tinymoe` command-line tool: builds the command tree and turns errors into messages and
// exit codes (0 success, 1 a tinymoe::Error or other failure, 77 a command skipped on request,
// CLI11's codes for usage errors).
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "tools/cli/commands.h"

namespace {

// An argument CLI11 could not place is a command the tool does not have: name it plainly
// instead of CLI11's "A subcommand is required" or "arguments were not expected".
int report_parse_error(CLI::App& app, const CLI::ParseError& error) {
  std::vector<std::string> unplaced = app.remaining(true);
  if (unplaced.empty()) return app.exit(error);
  std::cerr << "tinymoe: unknown command or argument '" << unplaced.front()
            << "'; run 'tinymoe --help' (or 'tinymoe <command> --help') for what is available\n";
  return error.get_exit_code() != 0 ? error.get_exit_code() : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tinymoe: a compact C++ autograd framework for sparse Mixture-of-Experts", "tinymoe"};
  app.set_version_flag("--version", std::string("tinymoe ") + TINYMOE_VERSION);
  app.require_subcommand(1);

  CLI::App* bench = app.add_subcommand("bench", "Measure tinymoe's kernels and overheads");
  bench->require_subcommand(1);
  tinymoe::cli::add_bench_ops(*bench);
  tinymoe::cli::add_moe_check(app);
  tinymoe::cli::add_bench_moe(*bench);
  tinymoe::cli::add_bench_ep(*bench);
  tinymoe::cli::add_inspect(app);

  try {
    app.parse(argc, argv);  // runs the chosen command's callback
  } catch (const CLI::ParseError& error) {
    return report_parse_error(app, error);
  } catch (const tinymoe::cli::CommandSkipped& skipped) {
    std::cout << "SKIPPED: " << skipped.what() << std::endl;
    return tinymoe::cli::kSkipExitCode;
  } catch (const std::exception& error) {
    std::cerr << "tinymoe: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
