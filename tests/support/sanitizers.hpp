// Which sanitizer a test program is built with, for tests that scale their
// iteration counts down under a sanitizer (the interleavings matter, not the
// count) or skip a check a sanitizer's runtime makes meaningless.
//   RESILIENCE_TEST_TSAN       ThreadSanitizer
//   RESILIENCE_TEST_SANITIZED  ThreadSanitizer or AddressSanitizer
#pragma once

#if defined(__SANITIZE_THREAD__)
#define RESILIENCE_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RESILIENCE_TEST_TSAN 1
#endif
#endif

#if defined(RESILIENCE_TEST_TSAN) || defined(__SANITIZE_ADDRESS__)
#define RESILIENCE_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RESILIENCE_TEST_SANITIZED 1
#endif
#endif
