"""Development tools: the demo, local moto servers, the workload generator, the
settings-table generator. moto comes with the ``demo`` extra."""
