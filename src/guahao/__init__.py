"""guahao: online hospital appointment registration (网上预约挂号)."""
__version__ = "0.1.0"
