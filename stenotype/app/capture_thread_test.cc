#include "app/capture_thread.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace steno {
namespace {

// Two threads race for the last packets of a --count budget, round after
// round: the budget must end at exactly zero every time (below zero it
// would never read as done and capture would not stop).
TEST(TakeFromCount, TwoThreadsNeverGoBelowZero) {
  constexpr int kRounds = 2000;
  std::atomic<int64_t> budget{0};
  std::atomic<int> round{-1}, helper_done{-1};
  auto drain = [&] {
    while (budget.load() > 0) TakeFromCount(&budget, 3);
  };
  std::thread helper([&] {
    for (int r = 0; r < kRounds; ++r) {
      while (round.load() < r) {
      }
      drain();
      helper_done = r;
    }
  });
  int below_zero = 0;
  for (int r = 0; r < kRounds; ++r) {
    budget = 3000;
    round = r;  // the helper spins on this, so both threads drain at once
    drain();
    while (helper_done.load() < r) std::this_thread::yield();
    if (budget.load() != 0) ++below_zero;
  }
  helper.join();
  EXPECT_EQ(below_zero, 0) << "of " << kRounds << " rounds left the budget below zero";
}

TEST(TakeFromCount, ForeverAndExhausted) {
  std::atomic<int64_t> forever{-1};
  TakeFromCount(&forever, 10);
  EXPECT_EQ(forever.load(), -1);
  std::atomic<int64_t> some{5};
  TakeFromCount(&some, 10);
  EXPECT_EQ(some.load(), 0);
  TakeFromCount(&some, 10);
  EXPECT_EQ(some.load(), 0);
}

}  // namespace
}  // namespace steno
