// A main for the fuzz targets in ordinary builds: feeds each file named on
// the command line (or found directly in a directory named there) to
// LLVMFuzzerTestOneInput once, so a committed corpus replays as a test.
// Fails when it finds no input at all: an empty or misnamed corpus must not
// pass silently.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

int replay(const std::filesystem::path& file) {
  std::ifstream in{file, std::ios::binary};
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", file.c_str());
    return 1;
  }
  const std::vector<char> bytes{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
  // A copy on the heap of exactly the input's size, as libFuzzer passes it,
  // so that a sanitized build catches reads past the end.
  const std::vector<std::uint8_t> data{bytes.begin(), bytes.end()};
  LLVMFuzzerTestOneInput(data.data(), data.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int inputs = 0, errors = 0;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path arg{argv[i]};
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(arg)) {
      for (const auto& entry : std::filesystem::directory_iterator{arg})
        if (entry.is_regular_file()) files.push_back(entry.path());
      std::sort(files.begin(), files.end());  // the same order every run
    } else {
      files.push_back(arg);
    }
    for (const auto& file : files) {
      errors += replay(file);
      ++inputs;
    }
  }
  if (inputs == 0) {
    std::fprintf(stderr, "no inputs found in the paths given\n");
    return 1;
  }
  std::printf("replayed %d inputs\n", inputs);
  return errors == 0 ? 0 : 1;
}
