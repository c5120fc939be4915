"""Pure building blocks shared by every domain: ids, money, geo maths, clock, errors.

Nothing in here performs I/O or imports a framework.
"""
