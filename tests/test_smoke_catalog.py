from checks.registry import catalog


def test_catalog_loads_and_has_lock_checks() -> None:
    cat = catalog()
    assert "AIB-LOCK-001" in cat and cat["AIB-LOCK-001"].meta.severity == "medium"
