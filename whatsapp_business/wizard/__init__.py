from . import whatsapp_composer
