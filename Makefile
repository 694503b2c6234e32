.PHONY: demo test lint
demo:  ## train, predict and compare on the built-in sample
	bash scripts/demo.sh
test:  ## set up and run the whole test suite under Xvfb
	bash scripts/test.sh
lint:
	.venv/bin/python -m ruff check src tests benchmarks
