// Forward, backward and a check of the result: proves the headers and the library link.
#include <cmath>
#include <iostream>

#include "tinymoe/tinymoe.h"

int main() {
  using namespace tinymoe;
  Tensor x = from_vector(std::vector<double>{1, 2, 3}, {3}).requires_grad_();
  Tensor loss = sum(mul(x, x));
  loss.backward();
  std::vector<double> grad = x.grad().to_vector<double>();
  bool ok = std::abs(loss.item() - 14.0) < 1e-12 && grad[0] == 2 && grad[1] == 4 && grad[2] == 6;
  std::cout << (ok ? "consumer ok" : "consumer WRONG") << "\n";
  return ok ? 0 : 1;
}
