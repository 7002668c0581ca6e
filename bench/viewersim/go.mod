module cascade.dev/bench/viewersim

go 1.22
