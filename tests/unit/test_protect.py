import base64

import pyarrow as pa
import pytest
from cryptography.fernet import Fernet

from sales_etl.core.errors import ConfigError
from sales_etl.datasets.reader import get_dataset
from sales_etl.stages.protect import Protector, blind_index

OLD, NEW = Fernet.generate_key(), Fernet.generate_key()
BLIND = b"b" * 32


def test_tokens_decrypt_to_the_normalised_value_and_hashes_are_stable() -> None:
    p = Protector((NEW,), BLIND)
    columns = {
        "customer_id": pa.array(["CUST-001", "CUST-002", "CUST-001"]),
        "product_id": pa.array(["P", "P", "P"]),
        "store_id": pa.array(["S", "S", "S"]),
    }
    out = {k: v.to_pylist() for k, v in p.protect(columns, get_dataset("sales")).items()}
    assert [p.decrypt(t) for t in out["customer_id"]] == ["CUST-001", "CUST-002", "CUST-001"]
    assert out["customer_id_hash"][0] == out["customer_id_hash"][2] != out["customer_id_hash"][1]
    assert out["customer_id_hash"][0] == blind_index(BLIND, "CUST-001").hex()
    assert "CUST" not in "".join(out["customer_id"])


def test_rotation_with_multifernet() -> None:
    old = Protector((OLD,), BLIND)
    token = old.encrypt("CUST-9")
    both = Protector((NEW, OLD), BLIND)
    assert both.decrypt(token) == "CUST-9" and not both.is_current(token)
    rotated = both.rotate(token)
    assert Protector((NEW,), BLIND).decrypt(rotated) == "CUST-9"
    with pytest.raises(ValueError):
        Protector((NEW,), BLIND).decrypt(token)


def test_bad_keys_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        Protector((b"not-a-key",), BLIND)
    with pytest.raises(ConfigError):
        Protector((NEW,), b"short")
    assert base64.urlsafe_b64decode(NEW)  # a real key is accepted
