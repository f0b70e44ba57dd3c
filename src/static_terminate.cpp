// Linked into builds with a static C++ runtime (build_arm.sh,
// build_musl.sh): std::terminate aborts without printing the exception's
// name. The runtimes' default handlers print it through their C++
// demangler, which is 40-60 KB of code on a router; no exception is ever
// meant to reach std::terminate here (see the macros in src/object.hpp).
// Defining the handler variables keeps the archive members holding the
// default handlers, and the demangler with them, out of the link.
#include <cstdlib>
#include <exception>

namespace {
[[noreturn]] void abort_on_terminate() noexcept { std::abort(); }
}  // namespace

// libstdc++ (GCC): eh_term_handler.o.
namespace __cxxabiv1 {
std::terminate_handler __terminate_handler = abort_on_terminate;
}
// libc++abi (clang, zig): cxa_default_handlers.o.
extern "C" {
std::terminate_handler __cxa_terminate_handler = abort_on_terminate;
void (*__cxa_unexpected_handler)() = abort_on_terminate;
void (*__cxa_new_handler)() = nullptr;  // the same member holds it
}
