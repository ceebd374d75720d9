"""Operations: command line, chat console, simulator, scaffold, metrics, health, settings reload, logs."""
