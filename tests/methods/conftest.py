import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The method tests' models are tiny: a second intra-op thread only adds spin-waits, which on
    a busy machine made each step several (hard-concrete: ~50) times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
