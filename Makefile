.PHONY: demo test test-wheel lint
demo:  ## train, predict and compare on the built-in sample
	bash scripts/demo.sh
test:  ## set up and run the whole test suite under Xvfb
	bash scripts/test.sh
test-wheel:  ## what CI runs: build sdist + wheel, check them, test the installed wheel
	bash scripts/test.sh --wheel
lint:
	.venv/bin/python -m ruff check src tests benchmarks
