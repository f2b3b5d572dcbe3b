"""Root of the test tree: pytest puts this directory on sys.path, so every test directory can import the
shared helpers here (`brokers`, `transport_doubles`) by plain name."""
