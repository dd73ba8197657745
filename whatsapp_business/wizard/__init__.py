from . import whatsapp_composer
from . import whatsapp_test_message
