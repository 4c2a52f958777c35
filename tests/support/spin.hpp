// spin_until(pred): waits, yielding and never sleeping, until pred holds,
// for threaded tests whose other side is known to get there.
#pragma once

#include <thread>

template <class Pred>
void spin_until(Pred pred) {
  while (!pred()) std::this_thread::yield();
}
